//! Kernel layout facts from BTF: struct member offsets, enum values and function presence.
//!
//! Rust eBPF has no CO-RE yet, so the loader resolves every offset the BPF programs need here and
//! writes them into the object's `.rodata` ([`swapscope_common::KernelLayout`]). Nothing is
//! hard-coded per kernel.

use std::path::Path;

use btf_rs::{Btf, Type};
use swapscope_common::KernelLayout;

/// Where the running kernel exposes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read kernel BTF at {path}: {source}; swapscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    Open { path: String, source: btf_rs::Error },
    #[error("kernel BTF has no {what}; this kernel is not supported yet (run `swapscope doctor`)")]
    Missing { what: String },
    #[error("kernel BTF lookup failed for {what}: {source}")]
    Lookup { what: String, source: btf_rs::Error },
}

/// The running kernel's BTF.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let btf = Btf::from_file(path).map_err(|source| BtfError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(KernelBtf { btf })
    }

    pub fn from_sys() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    fn lookup_err(what: &str) -> impl FnOnce(btf_rs::Error) -> BtfError + '_ {
        move |source| BtfError::Lookup {
            what: what.to_string(),
            source,
        }
    }

    /// Strips typedefs and qualifiers.
    fn resolve(&self, mut ty: Type) -> Result<Type, BtfError> {
        for _ in 0..32 {
            match &ty {
                Type::Typedef(t) => {
                    ty = self
                        .btf
                        .resolve_chained_type(t)
                        .map_err(Self::lookup_err("typedef"))?
                }
                Type::Const(t) => {
                    ty = self
                        .btf
                        .resolve_chained_type(t)
                        .map_err(Self::lookup_err("const"))?
                }
                Type::Volatile(t) => {
                    ty = self
                        .btf
                        .resolve_chained_type(t)
                        .map_err(Self::lookup_err("volatile"))?
                }
                Type::Restrict(t) => {
                    ty = self
                        .btf
                        .resolve_chained_type(t)
                        .map_err(Self::lookup_err("restrict"))?
                }
                Type::TypeTag(t) => {
                    ty = self
                        .btf
                        .resolve_chained_type(t)
                        .map_err(Self::lookup_err("type tag"))?
                }
                _ => return Ok(ty),
            }
        }
        Ok(ty)
    }

    fn struct_named(&self, name: &str) -> Result<btf_rs::Struct, BtfError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| BtfError::Missing {
                what: format!("struct {name}"),
            })?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| BtfError::Missing {
                what: format!("struct {name}"),
            })
    }

    /// Searches `s` and its anonymous struct/union members for `member`; returns its bit offset.
    fn find_member(
        &self,
        s: &btf_rs::Struct,
        member: &str,
        depth: u32,
    ) -> Result<Option<(u32, Type)>, BtfError> {
        if depth > 8 {
            return Ok(None);
        }
        for m in &s.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            if name == member {
                let ty = self
                    .btf
                    .resolve_chained_type(m)
                    .map_err(Self::lookup_err(member))?;
                return Ok(Some((m.bit_offset(), ty)));
            }
            if name.is_empty() {
                let ty = self
                    .btf
                    .resolve_chained_type(m)
                    .map_err(Self::lookup_err(member))?;
                if let Type::Struct(inner) | Type::Union(inner) = self.resolve(ty)?
                    && let Some((off, ty)) = self.find_member(&inner, member, depth + 1)?
                {
                    return Ok(Some((m.bit_offset() + off, ty)));
                }
            }
        }
        Ok(None)
    }

    /// Byte offset of `member` in `struct sname`, looking through anonymous unions and structs.
    /// When the member is itself a struct (e.g. `memdesc_flags_t flags` on 6.18), `inner` names
    /// the field inside it to descend into (`f`), if present.
    pub fn member_offset(&self, sname: &str, member: &str) -> Result<u32, BtfError> {
        let s = self.struct_named(sname)?;
        let (bits, _ty) = self
            .find_member(&s, member, 0)?
            .ok_or_else(|| BtfError::Missing {
                what: format!("member {sname}.{member}"),
            })?;
        if bits % 8 != 0 {
            return Err(BtfError::Missing {
                what: format!("byte-aligned member {sname}.{member}"),
            });
        }
        Ok(bits / 8)
    }

    /// Value of enumerator `name` in `enum ename`.
    pub fn enum_value(&self, ename: &str, name: &str) -> Result<u32, BtfError> {
        let types = self
            .btf
            .resolve_types_by_name(ename)
            .map_err(|_| BtfError::Missing {
                what: format!("enum {ename}"),
            })?;
        for t in types {
            if let Type::Enum(e) = t {
                for m in &e.members {
                    if self.btf.resolve_name(m).is_ok_and(|n| n == name) {
                        return Ok(m.val());
                    }
                }
            }
        }
        Err(BtfError::Missing {
            what: format!("enumerator {ename}::{name}"),
        })
    }

    /// `sizeof(struct name)`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        Ok(u32::try_from(self.struct_named(name)?.size()).unwrap_or(0))
    }

    /// A C-like spelling of a type: `struct folio *`, `swp_entry_t`, `int`, `void`.
    fn spell(&self, ty: Type, depth: u32) -> String {
        if depth > 8 {
            return "?".into();
        }
        let chained = |t: &dyn btf_rs::BtfType| self.btf.resolve_chained_type(t).ok();
        match &ty {
            Type::Void => "void".into(),
            Type::Ptr(p) => match chained(p) {
                Some(inner) => format!("{} *", self.spell(inner, depth + 1)),
                None => "void *".into(),
            },
            Type::Const(c) => chained(c).map_or("?".into(), |t| self.spell(t, depth + 1)),
            Type::Volatile(v) => chained(v).map_or("?".into(), |t| self.spell(t, depth + 1)),
            Type::Struct(s) => format!("struct {}", self.btf.resolve_name(s).unwrap_or_default()),
            Type::Typedef(t) => self.btf.resolve_name(t).unwrap_or_default(),
            Type::Int(i) => self.btf.resolve_name(i).unwrap_or_default(),
            Type::Enum(e) => format!("enum {}", self.btf.resolve_name(e).unwrap_or_default()),
            _ => "?".into(),
        }
    }

    /// The signature of function `name` as spelled parameter types and return type, if the
    /// kernel's BTF has that function.
    pub fn signature(&self, name: &str) -> Option<Signature> {
        let types = self.btf.resolve_types_by_name(name).ok()?;
        let func = types.into_iter().find_map(|t| match t {
            Type::Func(f) => Some(f),
            _ => None,
        })?;
        let Type::FuncProto(proto) = self.btf.resolve_chained_type(&func).ok()? else {
            return None;
        };
        let params = proto
            .parameters
            .iter()
            .filter(|p| !p.is_variadic())
            .map(|p| {
                self.btf
                    .resolve_chained_type(p)
                    .map_or("?".into(), |t| self.spell(t, 0))
            })
            .collect();
        let ret = match proto.return_type_id() {
            0 => "void".to_string(),
            id => self
                .btf
                .resolve_type_by_id(id)
                .map_or("?".into(), |t| self.spell(t, 0)),
        };
        Some(Signature { params, ret })
    }

    /// Whether a function (BTF `FUNC`) of that name exists.
    pub fn has_func(&self, name: &str) -> bool {
        self.btf
            .resolve_types_by_name(name)
            .is_ok_and(|ts| ts.iter().any(|t| matches!(t, Type::Func(_))))
    }

    /// Whether a type of that name exists (e.g. `btf_trace_mm_vmscan_write_folio`).
    pub fn has_type(&self, name: &str) -> bool {
        self.btf
            .resolve_ids_by_name(name)
            .is_ok_and(|ids| !ids.is_empty())
    }

    /// Everything the tracepoint-tier programs need.
    pub fn kernel_layout(&self) -> Result<KernelLayout, BtfError> {
        Ok(KernelLayout {
            folio_flags_off: self.member_offset("folio", "flags")?,
            // 6.1 keeps the order in the `_folio_order` byte; later kernels in `_flags_1`.
            folio_flags1_off: self
                .member_offset("folio", "_folio_order")
                .or_else(|_| self.member_offset("folio", "_flags_1"))?,
            order_mode: u32::from(self.member_offset("folio", "_folio_order").is_ok()),
            // 6.1 keeps a swap-cache folio's entry in `private` (there is no `swap` member yet).
            folio_swap_off: self
                .member_offset("folio", "swap")
                .or_else(|_| self.member_offset("folio", "private"))?,
            folio_mapping_off: self.member_offset("folio", "mapping")?,
            pg_head: self.enum_value("pageflags", "PG_head")?,
            pg_swapbacked: self.enum_value("pageflags", "PG_swapbacked")?,
            pg_swapcache: self.enum_value("pageflags", "PG_swapcache")?,
            pg_dirty: self.enum_value("pageflags", "PG_dirty")?,
            pg_writeback: self.enum_value("pageflags", "PG_writeback")?,
            valid: 1,
            // The full-tier hooks need these; a kernel without them keeps 0 and those hooks are
            // not planned (see `probe::plan`).
            si_type_off: self.member_offset("swap_info_struct", "type").unwrap_or(0),
            si_inuse_off: self
                .member_offset("swap_info_struct", "inuse_pages")
                .unwrap_or(0),
            si_cluster_info_off: self
                .member_offset("swap_info_struct", "cluster_info")
                .unwrap_or(0),
            ci_size: self.struct_size("swap_cluster_info").unwrap_or(0),
            ci_count_off: self
                .member_offset("swap_cluster_info", "count")
                .unwrap_or(0),
            ci_flags_off: self
                .member_offset("swap_cluster_info", "flags")
                .unwrap_or(0),
            ci_order_off: self
                .member_offset("swap_cluster_info", "order")
                .unwrap_or(0),
            cluster_codes: self.cluster_codes(),
            id_key: random_key(),
            nr_cpus: crate::host::possible_cpus(),
            // A preprocessor constant, not in BTF: the one the recordings' header carries.
            swp_type_shift: u32::from(swapscope_core::record::DEFAULT_SWP_TYPE_SHIFT),
            cluster_slots: crate::host::swap_cluster_slots(),
            folio_mapcount_off: self.member_offset("folio", "_mapcount").unwrap_or(0),
            folio_large_mapcount_off: self.member_offset("folio", "_large_mapcount").unwrap_or(0),
            _pad: 0,
        })
    }

    /// `enum swap_cluster_flags` (6.14+) as [`cluster_list`] codes, indexed by the kernel's
    /// value; all unknown when the enum is missing or a value is 8 or more.
    fn cluster_codes(&self) -> [u8; 8] {
        use swapscope_common::cluster_list as l;
        let mut codes = [l::UNKNOWN; 8];
        for (name, code) in [
            ("CLUSTER_FLAG_NONE", l::ISOLATED),
            ("CLUSTER_FLAG_FREE", l::FREE),
            ("CLUSTER_FLAG_NONFULL", l::NONFULL),
            ("CLUSTER_FLAG_FRAG", l::FRAG),
            ("CLUSTER_FLAG_FULL", l::FULL),
            ("CLUSTER_FLAG_DISCARD", l::DISCARD),
        ] {
            if let Ok(v) = self.enum_value("swap_cluster_flags", name)
                && let Some(slot) = codes.get_mut(v as usize)
            {
                *slot = code;
            }
        }
        codes
    }
}

/// A function's parameter and return types as [`KernelBtf::signature`] spells them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub params: Vec<String>,
    pub ret: String,
}

impl Signature {
    /// Whether the parameters match `pattern` exactly in number, with `*` matching any type.
    pub fn matches(&self, pattern: &[&str], ret: Option<&str>) -> bool {
        self.params.len() == pattern.len()
            && self
                .params
                .iter()
                .zip(pattern)
                .all(|(p, want)| *want == "*" || p == want)
            && ret.is_none_or(|r| r == self.ret)
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (", self.ret)?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{p}")?;
        }
        write!(f, ")")
    }
}

/// A per-session key for folio ids (not cryptographic: it only keeps raw kernel addresses out of
/// recordings).
fn random_key() -> u64 {
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_ok()
    {
        return u64::from_le_bytes(buf);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against the build host's own BTF when there is one (every Linux CI machine with
    /// CONFIG_DEBUG_INFO_BTF); the expectations are facts of any x86-64 kernel since 5.16.
    #[test]
    fn resolves_folio_layout_from_host_btf() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            eprintln!("SKIP: no {VMLINUX_BTF} on this host");
            return;
        }
        let btf = match KernelBtf::from_file(path) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let l = match btf.kernel_layout() {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            l.folio_flags_off, 0,
            "flags is the first word of struct page/folio"
        );
        assert_eq!(
            l.folio_flags1_off, 64,
            "_flags_1 is the first word of the second struct page"
        );
        assert!(l.folio_swap_off > 0 && l.folio_swap_off < 64);
        assert_ne!(l.pg_head, l.pg_swapbacked);
        assert!(btf.has_type("btf_trace_mm_vmscan_write_folio"));
        let sig = btf
            .signature("folio_alloc_swap")
            .or_else(|| btf.signature("add_to_swap"));
        match sig {
            Some(sig) => assert_eq!(
                sig.params.first().map(String::as_str),
                Some("struct folio *"),
                "{sig}"
            ),
            None => panic!("neither folio_alloc_swap nor add_to_swap in BTF"),
        }
        assert!(!btf.has_func("surely_no_such_kernel_function_xyz"));
    }
}
