//! The event stream: one enum for everything swapscope records, replays and analyses.
//!
//! Live probes, the samplers, `simulate` and recordings all produce [`Event`]s in kernel order.
//! Later probe tiers add variants; a reader skips kinds it does not know (see `record`).

use swapscope_common::{PFN_UNKNOWN, WriteoutEvent, folio_flags};

/// Boot-time nanoseconds (`CLOCK_BOOTTIME`, the clock of `bpf_ktime_get_boot_ns`).
pub type Ts = u64;

/// The virtual-slot encoding of simulated streams: the one definition, shared by the workload
/// generators (which emit it) and the engine (which maps it onto each model's slots).
///
/// An `Alloc { id, order, result: Unknown }` owns the virtual slots
/// `(SWAP_TYPE, offset(id, page))` for `page` in `0 .. 2^order`, i.e. `id << PAGE_BITS | page`.
/// The workload frees them with `Free { swap_type: SWAP_TYPE, offset: offset(id, page), nr }`:
/// any sub-range of the allocation, in any number of pieces (a free never spans two ids). Ids
/// are below [`ID_LIMIT`] and are not reused while any page of the previous use is allocated
/// (the engine then frees the old pages first and counts an anomaly).
pub mod virtual_slot {
    /// Swap type of virtual slots.
    pub const SWAP_TYPE: u8 = 0xff;
    /// Bits of the page index inside a virtual offset (2^9 = 512 pages, the largest folio).
    pub const PAGE_BITS: u32 = 9;
    /// Ids must be below this.
    pub const ID_LIMIT: u64 = 1 << 47;

    /// The virtual offset of page `page` of allocation `id`.
    pub const fn offset(id: u64, page: u64) -> u64 {
        id << PAGE_BITS | (page & ((1 << PAGE_BITS) - 1))
    }

    /// The allocation id a virtual offset belongs to.
    pub const fn id(offset: u64) -> u64 {
        offset >> PAGE_BITS
    }

    /// The page index of a virtual offset inside its allocation.
    pub const fn page(offset: u64) -> u64 {
        offset & ((1 << PAGE_BITS) - 1)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A swap-backed folio written out by reclaim, with the swap entry it holds.
    Writeout(Writeout),
    /// Kernel counters sampled from sysfs/procfs.
    Counters(CounterSample),
    /// The swap devices as `/proc/swaps` lists them.
    Devices(DeviceList),
    /// Cumulative lost-event counts.
    Lost(Lost),
    /// A swap device came into use, with the geometry the allocator models need.
    SwapOn(SwapOn),
    /// A swap device went away.
    SwapOff(SwapOff),
    /// A request for 2^order contiguous swap slots, with the kernel's answer when known.
    Alloc(Alloc),
    /// Slots given back: `nr` slots from `offset` on device `swap_type`.
    Free(Free),
    /// A named point in the stream (e.g. the start of a workload iteration).
    Marker(Marker),
    /// A large folio about to be split (full tier).
    Split(Split),
    /// A folio about to be read back from swap (full tier).
    SwapIn(SwapIn),
    /// A swap cluster moved between the allocator's lists (full tier, 6.14+).
    Cluster(ClusterMove),
    /// Slots the allocator handed out, seen inside its lock: where the kernel decided a request
    /// (full tier, 6.12 and 7.x).
    Grant(Grant),
}

/// Every event kind's name, in [`Event::kind_index`] order.
pub const KINDS: [&str; 13] = [
    "writeout", "alloc", "free", "split", "swapin", "cluster", "grant", "marker", "counters",
    "devices", "lost", "swapon", "swapoff",
];

impl Event {
    /// Bytes the event holds on the heap (labels, names, lists): what queues of events bound
    /// besides their count, since a crafted file can make these large and still compress well.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Event::Marker(m) => m.label.len(),
            Event::SwapOn(on) => on.bad.len() * size_of::<u64>(),
            Event::Counters(c) => c
                .values
                .iter()
                .map(|(n, _)| n.len() + size_of::<(String, u64)>())
                .sum(),
            Event::Devices(d) => d
                .devices
                .iter()
                .map(|dev| dev.path.len() + size_of::<SwapDevice>())
                .sum(),
            Event::Writeout(_)
            | Event::Lost(_)
            | Event::SwapOff(_)
            | Event::Alloc(_)
            | Event::Free(_)
            | Event::Split(_)
            | Event::SwapIn(_)
            | Event::Cluster(_)
            | Event::Grant(_) => 0,
        }
    }

    /// Whether the kernel reported this event (a write-out, request, free, split, swap-in,
    /// cluster move or grant), as opposed to samples, device lists, loss counts and markers.
    pub fn is_kernel_event(&self) -> bool {
        matches!(
            self,
            Event::Writeout(_)
                | Event::Alloc(_)
                | Event::Free(_)
                | Event::Split(_)
                | Event::SwapIn(_)
                | Event::Cluster(_)
                | Event::Grant(_)
        )
    }

    /// The kind's name, as `dump`, the Events view and `export` spell it.
    pub fn kind_name(&self) -> &'static str {
        KINDS[self.kind_index()]
    }

    /// The kind's position in [`KINDS`] (the kernel's swap events first).
    pub fn kind_index(&self) -> usize {
        match self {
            Event::Writeout(_) => 0,
            Event::Alloc(_) => 1,
            Event::Free(_) => 2,
            Event::Split(_) => 3,
            Event::SwapIn(_) => 4,
            Event::Cluster(_) => 5,
            Event::Grant(_) => 6,
            Event::Marker(_) => 7,
            Event::Counters(_) => 8,
            Event::Devices(_) => 9,
            Event::Lost(_) => 10,
            Event::SwapOn(_) => 11,
            Event::SwapOff(_) => 12,
        }
    }

    /// The folio order the event is about, when it has one.
    pub fn order(&self) -> Option<u8> {
        match self {
            Event::Writeout(w) => Some(w.order),
            Event::Alloc(a) => Some(a.order),
            Event::Split(s) => s.old_order,
            Event::SwapIn(s) => s.order,
            Event::Cluster(c) => c.serves_order(),
            Event::Grant(g) => Some(g.order),
            _ => None,
        }
    }

    /// The task the event names, when it has one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Event::Writeout(w) => Some(w.pid),
            Event::Split(s) => Some(s.pid),
            Event::SwapIn(s) => Some(s.pid),
            Event::Grant(g) => Some(g.pid),
            _ => None,
        }
    }

    /// The event in words, without its kind and timestamp: the one human format, shared by
    /// `dump` and the TUI's Events view.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        match self {
            Event::Writeout(w) if !w.has_slot() => {
                let _ = write!(
                    s,
                    "{} slot unknown (left the swap cache first) cpu {} pid {}",
                    folio_size(w.order),
                    w.cpu,
                    w.pid
                );
            }
            Event::Writeout(w) => {
                let _ = write!(
                    s,
                    "{} dev {} slot {} cpu {} pid {}",
                    folio_size(w.order),
                    w.swap_type,
                    w.offset,
                    w.cpu,
                    w.pid
                );
                if w.tgid != w.pid {
                    let _ = write!(s, " tgid {}", w.tgid);
                }
                s.push_str(if w.is_anon() { " anon" } else { " shmem" });
                if w.flags & folio_flags::DIRTY != 0 {
                    s.push_str(" dirty");
                }
                if let Some(pfn) = w.pfn {
                    let _ = write!(s, " pfn {pfn:#x}");
                }
            }
            Event::Alloc(a) => {
                let _ = write!(
                    s,
                    "{} cpu {} id {:#x} -> ",
                    folio_size(a.order),
                    a.cpu,
                    a.id
                );
                match a.result {
                    AllocResult::Success { swap_type, offset } => {
                        let _ = write!(s, "dev {swap_type} slot {offset}");
                    }
                    AllocResult::Failure => s.push_str("REFUSED"),
                    AllocResult::Unknown if a.id < virtual_slot::ID_LIMIT => {
                        s.push_str("(simulated)");
                    }
                    AllocResult::Unknown => s.push('?'),
                }
                if let Some(ns) = a.latency_ns {
                    let _ = write!(s, " in {:.1}µs", f64::from(ns) / 1e3);
                }
            }
            Event::Free(f) => {
                let dev = if f.swap_type == virtual_slot::SWAP_TYPE {
                    let _ = write!(
                        s,
                        "{} slot(s) of simulated id {:#x} from page {}",
                        f.nr,
                        virtual_slot::id(f.offset),
                        virtual_slot::page(f.offset)
                    );
                    false
                } else {
                    true
                };
                if dev {
                    let _ = write!(s, "{} slot(s) dev {} from {}", f.nr, f.swap_type, f.offset);
                }
                let _ = write!(s, " cpu {}", f.cpu);
            }
            Event::Split(sp) => {
                let old = sp.old_order.map_or("?".to_string(), folio_size);
                let _ = write!(
                    s,
                    "{old} -> {} cpu {} pid {} id {:#x}",
                    folio_size(sp.new_order),
                    sp.cpu,
                    sp.pid,
                    sp.id
                );
            }
            Event::SwapIn(si) => {
                let size = si.order.map_or("?".to_string(), folio_size);
                let _ = write!(
                    s,
                    "{size} dev {} slot {} cpu {} pid {}",
                    si.swap_type, si.offset, si.cpu, si.pid
                );
                if si.tgid != si.pid {
                    let _ = write!(s, " tgid {}", si.tgid);
                }
                if si.flags & folio_flags::SWAPCACHE == 0 {
                    s.push_str(" no-cache");
                }
            }
            Event::Cluster(c) => {
                let _ = write!(
                    s,
                    "dev {} cluster {} -> {}",
                    c.swap_type,
                    c.cluster,
                    cluster_list_name(c.list)
                );
                if let Some(o) = c.serves_order() {
                    let _ = write!(s, "[{}]", folio_size(o));
                }
                if c.old_list != cluster_list::UNKNOWN {
                    let _ = write!(s, " from {}", cluster_list_name(c.old_list));
                }
                let _ = write!(s, " count {} cpu {}", c.count, c.cpu);
            }
            Event::Grant(g) if g.nr == 0 => {
                let _ = write!(
                    s,
                    "{} REFUSED cpu {} pid {}",
                    folio_size(g.order),
                    g.cpu,
                    g.pid
                );
            }
            Event::Grant(g) => {
                let _ = write!(
                    s,
                    "{} dev {} slot {}",
                    folio_size(g.order),
                    g.swap_type,
                    g.offset
                );
                if g.nr > 1 {
                    let _ = write!(s, " (+{} more)", g.nr - 1);
                }
                let _ = write!(s, " cpu {}", g.cpu);
                if g.req_cpu != g.cpu {
                    let _ = write!(s, " (entered on {})", g.req_cpu);
                }
                let _ = write!(s, " pid {}", g.pid);
                if g.id != 0 {
                    let _ = write!(s, " id {:#x}", g.id);
                }
                if !g.batch.is_empty() {
                    s.push_str(" batch ");
                    write_runs(&mut s, &g.batch);
                }
            }
            Event::Marker(m) => {
                let _ = write!(s, "{:?}", m.label);
            }
            Event::Counters(c) => {
                let _ = write!(s, "{} values:", c.values.len());
                for (n, v) in &c.values {
                    let _ = write!(s, " {}={v}", printable(n));
                }
            }
            Event::Devices(d) => {
                if d.devices.is_empty() {
                    s.push_str("no swap devices");
                }
                for (i, dev) in d.devices.iter().enumerate() {
                    let _ = write!(
                        s,
                        "{}{} {} {} {} KiB used {} KiB prio {}",
                        if i > 0 { "; " } else { "" },
                        dev.index,
                        printable(&dev.path),
                        dev.kind.as_str(),
                        dev.size_kb,
                        dev.used_kb,
                        dev.prio
                    );
                }
            }
            Event::Lost(l) => {
                let _ = write!(
                    s,
                    "ring buffer {} userspace {} (cumulative)",
                    l.ringbuf, l.userspace
                );
            }
            Event::SwapOn(on) => {
                let _ = write!(
                    s,
                    "dev {} {} slots ({} bad) prio {}",
                    on.swap_type,
                    on.max.saturating_sub(1),
                    on.bad.len(),
                    on.prio
                );
                for (bit, name) in [
                    (swap_flags::SOLIDSTATE, "solidstate"),
                    (swap_flags::BLKDEV, "blkdev"),
                    (swap_flags::PAGE_DISCARD, "discard"),
                    (swap_flags::SYNCHRONOUS_IO, "sync-io"),
                ] {
                    if on.flags & bit != 0 {
                        let _ = write!(s, " {name}");
                    }
                }
            }
            Event::SwapOff(off) => {
                let _ = write!(s, "dev {}", off.swap_type);
            }
        }
        s
    }

    /// The event's timestamp.
    pub fn ts(&self) -> Ts {
        match self {
            Event::Writeout(e) => e.ts_ns,
            Event::Counters(e) => e.ts_ns,
            Event::Devices(e) => e.ts_ns,
            Event::Lost(e) => e.ts_ns,
            Event::SwapOn(e) => e.ts_ns,
            Event::SwapOff(e) => e.ts_ns,
            Event::Alloc(e) => e.ts_ns,
            Event::Free(e) => e.ts_ns,
            Event::Marker(e) => e.ts_ns,
            Event::Split(e) => e.ts_ns,
            Event::SwapIn(e) => e.ts_ns,
            Event::Cluster(e) => e.ts_ns,
            Event::Grant(e) => e.ts_ns,
        }
    }
}

/// A folio size in words: `4K`, `64K`, `2M`.
pub fn folio_size(order: u8) -> String {
    let kb = 4u64 << order.min(20);
    if kb >= 1024 && kb.is_multiple_of(1024) {
        format!("{}M", kb / 1024)
    } else {
        format!("{kb}K")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writeout {
    pub ts_ns: Ts,
    pub cpu: u32,
    pub pid: u32,
    pub tgid: u32,
    pub swap_type: u8,
    pub offset: u64,
    pub order: u8,
    pub pfn: Option<u64>,
    /// `swapscope_common::folio_flags` bits.
    pub flags: u32,
}

impl Writeout {
    /// Decodes a BPF event, splitting the swap entry with the architecture's `SWP_TYPE_SHIFT`.
    pub fn from_bpf(ev: &WriteoutEvent, swp_type_shift: u8) -> Self {
        let shift = u32::from(swp_type_shift.min(63));
        Writeout {
            ts_ns: ev.header.ts_ns,
            cpu: ev.header.cpu,
            pid: ev.pid_tgid as u32,
            tgid: (ev.pid_tgid >> 32) as u32,
            swap_type: (ev.swap_val >> shift) as u8,
            offset: ev.swap_val & ((1u64 << shift) - 1),
            order: ev.order,
            pfn: (ev.pfn != PFN_UNKNOWN).then_some(ev.pfn),
            flags: ev.flags,
        }
    }

    pub fn is_anon(&self) -> bool {
        self.flags & folio_flags::ANON != 0
    }

    /// Whether the write-out names its slot: false when another CPU took the folio out of the
    /// swap cache before the tracepoint ran (`folio_flags::NO_SLOT`, entry 0). Such a write-out
    /// counts in the totals but not where slots matter.
    pub fn has_slot(&self) -> bool {
        self.flags & folio_flags::NO_SLOT == 0
    }
}

/// One sample of named kernel counters. Names are `hugepages-<N>kB/<stat>` for per-size mTHP
/// stats and `vmstat/<name>` for `/proc/vmstat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSample {
    pub ts_ns: Ts,
    pub values: Vec<(String, u64)>,
}

impl CounterSample {
    /// One name's value (the first, if a name repeats). A linear search: for one name, never
    /// in a loop over another sample's names (a recording may carry any number of names; take
    /// a [`CounterBase`] of it instead).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// A sample's values by name, to take the deltas of another sample's names against it at a
/// constant cost per name (a linear [`CounterSample::get`] per name made `report` on a
/// recording with 100,000 names take 22 s, hostile #21 class 8). A repeated name keeps its first
/// value, as `get` does.
#[derive(Clone, Debug, Default)]
pub struct CounterBase(std::collections::HashMap<String, u64>);

impl CounterBase {
    pub fn of(sample: &CounterSample) -> Self {
        let mut m = std::collections::HashMap::with_capacity(sample.values.len());
        for (name, v) in &sample.values {
            m.entry(name.clone()).or_insert(*v);
        }
        CounterBase(m)
    }

    /// `value` less this sample's value of `name` (0 when it had none), saturating.
    pub fn since(&self, name: &str, value: u64) -> u64 {
        value.saturating_sub(self.0.get(name).copied().unwrap_or(0))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Zram,
    Partition,
    File,
    Other,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Zram => "zram",
            DeviceKind::Partition => "partition",
            DeviceKind::File => "file",
            DeviceKind::Other => "other",
        }
    }
}

/// One line of `/proc/swaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapDevice {
    /// Position among the active devices; equals the kernel's swap type unless an earlier
    /// device was swapped off.
    pub index: u8,
    pub path: String,
    pub kind: DeviceKind,
    pub size_kb: u64,
    pub used_kb: u64,
    pub prio: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceList {
    pub ts_ns: Ts,
    pub devices: Vec<SwapDevice>,
}

/// Cumulative counts of events lost so far in the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    pub ts_ns: Ts,
    /// Events the BPF ring buffer had no room for (summed over CPUs).
    pub ringbuf: u64,
    /// Events userspace dropped (writer fell behind).
    pub userspace: u64,
}

/// Device flags that change allocator policy (the kernel's `SWP_*` meaning, swapscope's bits).
pub mod swap_flags {
    pub const SOLIDSTATE: u32 = 1 << 0;
    pub const BLKDEV: u32 = 1 << 1;
    pub const PAGE_DISCARD: u32 = 1 << 2;
    pub const SYNCHRONOUS_IO: u32 = 1 << 3;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapOn {
    pub ts_ns: Ts,
    pub swap_type: u8,
    /// `si->max`: slots including the header slot 0.
    pub max: u64,
    /// Bad slots (besides slot 0, which is always the header).
    pub bad: Vec<u64>,
    /// [`swap_flags`] bits.
    pub flags: u32,
    pub prio: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapOff {
    pub ts_ns: Ts,
    pub swap_type: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocResult {
    /// The kernel's answer is not in the stream (simulated requests).
    Unknown,
    Success {
        swap_type: u8,
        offset: u64,
    },
    Failure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alloc {
    pub ts_ns: Ts,
    pub cpu: u32,
    pub order: u8,
    /// Identifies the folio/allocation across events (e.g. a simulated folio id, or pfn).
    pub id: u64,
    pub result: AllocResult,
    /// Full tier: how long the kernel took to answer (entry to exit of the allocation hook in
    /// this task), when the entry was seen.
    pub latency_ns: Option<u32>,
    /// Not delivered by the kernel but inferred from events that were (see `crate::repair`).
    pub inferred: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Free {
    pub ts_ns: Ts,
    pub cpu: u32,
    pub swap_type: u8,
    pub offset: u64,
    pub nr: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub ts_ns: Ts,
    pub label: String,
}

/// Whether a character must not reach a terminal as is: a control character (C0, DEL, C1 —
/// what starts an escape sequence, sets a title, clears the screen or breaks a line), or an
/// invisible one that reorders or hides text (the bidirectional overrides and isolates behind
/// "Trojan Source", CVE-2021-42574; zero-width characters; line and paragraph separators; the
/// byte-order mark).
fn hides_text(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `s` as it may be printed to a terminal or a spreadsheet: every character that could act on
/// the terminal or hide text ([`hides_text`]) written as its Rust escape (`\u{1b}`), everything
/// else as is. For text a recording carries (marker labels, device paths, counter names)
/// wherever a text form prints it; JSON and Parquet keep it exact.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    escape_where(s, hides_text)
}

/// As [`printable`], but line ends (LF, CR) and tabs stay as they are: for a CSV cell, which
/// quotes them (RFC 4180) and whose readers expect them back (a label with CRLF reads back
/// whole in DuckDB); what starts an escape sequence or reorders text is escaped.
pub fn printable_cell(s: &str) -> std::borrow::Cow<'_, str> {
    escape_where(s, |c| !matches!(c, '\n' | '\r' | '\t') && hides_text(c))
}

fn escape_where(s: &str, escape: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(&escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Bytes of a marker's label that views and reports keep (the file holds up to 64 KiB): what a
/// stream of markers can cost in memory does not follow what their labels claim.
pub const MAX_KEPT_LABEL: usize = 200;

impl Marker {
    /// The label as views and reports keep it: at most [`MAX_KEPT_LABEL`] bytes, cut at a
    /// character boundary and ended with `…` when cut.
    pub fn kept_label(&self) -> String {
        if self.label.len() <= MAX_KEPT_LABEL {
            return self.label.clone();
        }
        let mut end = MAX_KEPT_LABEL;
        while !self.label.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &self.label[..end])
    }
}

/// A large folio about to be split. `id` is in the same space as [`Alloc::id`] for streams from
/// the probes, so a split can be matched with the failed request before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub ts_ns: Ts,
    pub cpu: u32,
    pub pid: u32,
    pub id: u64,
    /// Order before the split; `None` when the hook could not tell.
    pub old_order: Option<u8>,
    pub new_order: u8,
    /// Not delivered by the kernel but inferred from events that were (see `crate::repair`).
    pub inferred: bool,
}

/// A folio about to be read back from swap: 2^order slots from `offset` on `swap_type` come
/// back into memory (the slots stay allocated until the entries are freed: a separate event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapIn {
    pub ts_ns: Ts,
    pub cpu: u32,
    pub pid: u32,
    pub tgid: u32,
    /// Same id space as [`Alloc::id`].
    pub id: u64,
    pub swap_type: u8,
    pub offset: u64,
    /// Folio order; `None` when the hook could not tell (6.1 sees a `struct page`).
    pub order: Option<u8>,
    /// `swapscope_common::folio_flags` bits (`SWAPCACHE` clear: the read bypasses the cache).
    pub flags: u32,
}

/// A swap cluster put on one of the allocator's lists (`move_cluster`) or taken off them by an
/// allocator (`isolate_lock_cluster`: `list` = [`cluster_list::ISOLATED`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterMove {
    pub ts_ns: Ts,
    pub cpu: u32,
    pub swap_type: u8,
    /// Cluster index: its slots are `cluster * 512 ..`.
    pub cluster: u32,
    /// [`cluster_list`] code of the list it goes to.
    pub list: u8,
    /// [`cluster_list`] code of the list the kernel had it on (`ci->flags`), or
    /// [`cluster_list::UNKNOWN`] for an isolation.
    pub old_list: u8,
    /// `ci->order`: the order a nonfull/frag cluster serves.
    pub order: u8,
    /// `ci->count`: slots in use when the hook ran.
    pub count: u16,
}

impl ClusterMove {
    /// The order the cluster serves on its new list: only nonfull and frag lists are per order.
    pub fn serves_order(&self) -> Option<u8> {
        matches!(self.list, cluster_list::NONFULL | cluster_list::FRAG).then_some(self.order)
    }
}

/// Slots the allocator handed out, seen inside the lock that orders its decisions (7.x:
/// `__swap_cache_add_folio` under the cluster lock; 6.12: `scan_swap_map_slots` under
/// `si->lock`): the moment the kernel decided a request, in the order it decided them — which
/// the request event, emitted when the allocation hook returns, is not. `nr` allocations of
/// 2^order slots, the first at `offset` on `swap_type`. One folio (7.x): `nr` 1, `id` the
/// folio's, as in its [`Alloc`]. 6.12's batch refilling a CPU's slot cache: `id` 0; the first
/// slot goes to the request of task `pid`. `nr` 0 (6.12): the allocator refused a single
/// allocation of that order here (no slot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub ts_ns: Ts,
    /// The CPU that decided (whose per-CPU cluster was used).
    pub cpu: u32,
    /// The CPU the request's task entered the allocator on (6.12: whose slot cache a batch
    /// refills); `cpu` when not known.
    pub req_cpu: u32,
    pub pid: u32,
    pub tgid: u32,
    pub id: u64,
    pub swap_type: u8,
    pub offset: u64,
    pub order: u8,
    pub nr: u32,
    /// 6.12's batch refill, where the probe could read it: the offsets of all `nr` slots in the
    /// order the allocator took them (the order the CPU's slot cache hands them out), `offset`
    /// first. Empty otherwise.
    pub batch: Vec<u64>,
    /// When the request's task entered the allocator (0: not known). A batch (6.12) takes its
    /// slots anywhere between then and `ts_ns`: the scan drops `si->lock` to reclaim swap cache.
    pub start_ns: Ts,
}

pub use swapscope_common::cluster_list;

/// The name of a [`cluster_list`] code.
pub fn cluster_list_name(code: u8) -> &'static str {
    match code {
        cluster_list::ISOLATED => "isolated",
        cluster_list::FREE => "free",
        cluster_list::NONFULL => "nonfull",
        cluster_list::FRAG => "frag",
        cluster_list::FULL => "full",
        cluster_list::DISCARD => "discard",
        _ => "unknown",
    }
}

/// The completeness check on `si->inuse_pages`: between two free events on a device, the
/// kernel's in-use count must move by exactly the slots freed and the slots of the requests seen
/// in between. A mismatch means events are missing (a hook inlined at some call site, a request
/// path not hooked, a program skipped), or — before 6.14 or with several CPUs — slots taken in
/// batches by the slot cache or events reordered between CPUs.
#[derive(Clone, Debug, Default)]
pub struct InuseCheck {
    /// Per device: the in-use count the stream predicts, when known.
    expected: std::collections::HashMap<u8, u64>,
    pub checks: u64,
    pub mismatches: u64,
    /// Grants were seen: the kernel's in-use count moves at grants (inside the allocator's
    /// lock, as it does), no longer at requests.
    grants: bool,
}

impl InuseCheck {
    /// A successful request of 2^order slots (counted only while the stream has no grants).
    pub fn alloc(&mut self, swap_type: u8, order: u8) {
        if self.grants {
            return;
        }
        if let Some(e) = self.expected.get_mut(&swap_type) {
            *e += 1u64 << order.min(63);
        }
    }

    /// A grant of `nr` allocations of 2^order slots: `si->inuse_pages` moves by all of them
    /// (6.12's slot-cache refill allocates the whole batch at once).
    pub fn grant(&mut self, swap_type: u8, order: u8, nr: u32) {
        self.grants = true;
        if let Some(e) = self.expected.get_mut(&swap_type) {
            *e += u64::from(nr) << order.min(32);
        }
    }

    /// A free of `nr` slots whose hook saw `inuse` (before the free).
    pub fn free(&mut self, swap_type: u8, nr: u32, inuse: u64) {
        if let Some(e) = self.expected.get(&swap_type) {
            self.checks += 1;
            if *e != inuse {
                self.mismatches += 1;
            }
        }
        self.expected
            .insert(swap_type, inuse.saturating_sub(u64::from(nr)));
    }

    /// A device went away: nothing is predicted for it any more.
    pub fn forget(&mut self, swap_type: u8) {
        self.expected.remove(&swap_type);
    }
}

/// `offsets` as comma-separated runs of consecutive slots (`22928-22933,22935`).
fn write_runs(s: &mut String, offsets: &[u64]) {
    use std::fmt::Write as _;
    let mut i = 0;
    while let Some(&start) = offsets.get(i) {
        let mut end = start;
        while offsets.get(i + 1) == Some(&end.wrapping_add(1)) {
            end += 1;
            i += 1;
        }
        if !s.ends_with(' ') {
            s.push(',');
        }
        if end == start {
            let _ = write!(s, "{start}");
        } else {
            let _ = write!(s, "{start}-{end}");
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inuse_check_counts_mismatches() {
        let mut c = InuseCheck::default();
        c.free(0, 1, 100); // first sight: nothing to check yet
        c.alloc(0, 4); // expected 99 + 16
        c.free(0, 2, 115);
        assert_eq!((c.checks, c.mismatches), (1, 0));
        c.free(0, 1, 120); // expected 113: an allocation was missed
        assert_eq!((c.checks, c.mismatches), (2, 1));
        c.forget(0);
        c.free(0, 1, 7);
        assert_eq!(c.checks, 2);
    }

    #[test]
    fn inuse_check_moves_at_grants_once_there_are_grants() {
        let mut c = InuseCheck::default();
        c.free(0, 1, 100); // expected 99
        c.grant(0, 0, 64); // a 6.12 slot-cache refill: 64 slots at once
        c.alloc(0, 0); // the request served from the cache moves nothing
        c.grant(0, 4, 1);
        c.alloc(0, 4);
        c.free(0, 1, 99 + 64 + 16);
        assert_eq!((c.checks, c.mismatches), (1, 0));
    }
}
