//! Divergences (`report --divergence N`): the first requests where a model answered otherwise
//! than the kernel, each with what a kernel developer needs to see why — the CPU that decided
//! it, what the other CPUs decided around it, the model's view of the clusters involved and the
//! kernel's own (as the stream rebuilt it).
//!
//! "Around it" is defined by the stream's order, not by clocks: the requests other CPUs had
//! decided since this CPU's previous request, and those they decide until this CPU's next one.
//! Those are the decisions that could have changed what this CPU found.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::RealOccupancy;
use crate::alloc::{AllocatorModel, CLUSTER_SLOTS, ClusterCell, ClusterList};
use crate::event::Ts;

/// Requests remembered for the "before" side (any CPU).
const RECENT: usize = 256;
/// Requests of other CPUs listed on each side of a divergence at most.
const MAX_SIDE: usize = 16;

/// A slot on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRef {
    pub swap_type: u8,
    pub offset: u64,
}

/// One cluster as a map sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub cluster: u64,
    /// Slots in use.
    pub used: u16,
    /// The order it serves, where it has one.
    pub order: Option<u8>,
    pub list: ClusterList,
}

impl ClusterView {
    /// Cluster `cluster` of device `swap_type` in `m`'s map (`cells` is scratch).
    fn of(
        m: &dyn AllocatorModel,
        swap_type: u8,
        cluster: u64,
        cells: &mut Vec<ClusterCell>,
    ) -> Option<Self> {
        cells.clear();
        if !m.cluster_map(swap_type, cells) {
            return None;
        }
        Self::from_cells(cells, cluster)
    }

    fn from_cells(cells: &[ClusterCell], cluster: u64) -> Option<Self> {
        let c = cells.get(usize::try_from(cluster).ok()?)?;
        Some(ClusterView {
            cluster,
            used: c.used,
            order: c.order,
            list: c.list,
        })
    }
}

/// A request another CPU decided near a divergence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nearby {
    /// Its event number (1-based) in the stream.
    pub event: u64,
    pub ts_ns: Ts,
    pub cpu: u32,
    pub order: u8,
    /// The kernel's slot for it; `null`: refused.
    pub kernel: Option<SlotRef>,
}

/// Where a divergent request was decided: `grant` or `request` in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedAt {
    /// At its grant: the kernel's own order.
    Grant,
    /// At the request event: no grant seen.
    Request,
}

impl DecidedAt {
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedAt::Grant => "grant",
            DecidedAt::Request => "request",
        }
    }
}

/// One request a model answered otherwise than the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// Event number (1-based) of the grant or request event it was decided at.
    pub event: u64,
    pub ts_ns: Ts,
    pub cpu: u32,
    pub order: u8,
    /// `grant` (the kernel's own order) or `request` (at the request event: no grant seen).
    pub decided_at: DecidedAt,
    /// The kernel's first slot; `null`: the kernel refused the request.
    pub kernel: Option<SlotRef>,
    /// The model's first slot; `null`: the model refused the request (a fallback the kernel did
    /// not make).
    pub model: Option<SlotRef>,
    /// After the model's answer: the model's view of the kernel's cluster, the model's view of
    /// its own, and the kernel's cluster as the stream rebuilt it (its list where the stream
    /// carries cluster events).
    pub model_view_of_kernel_cluster: Option<ClusterView>,
    pub model_cluster: Option<ClusterView>,
    pub kernel_cluster: Option<ClusterView>,
    /// Requests other CPUs decided since this CPU's previous request, oldest first.
    pub before: Vec<Nearby>,
    /// Requests other CPUs decided after it, until this CPU's next request.
    pub after: Vec<Nearby>,
    /// Whether `after` is complete (this CPU decided again, or the side limit was reached).
    #[serde(skip)]
    closed: bool,
}

/// A decided request, as remembered.
#[derive(Clone, Copy, Debug)]
struct Decided {
    nearby: Nearby,
}

/// The divergence logs of every model and the window of recent requests they draw on.
#[derive(Debug, Default)]
pub struct Divergences {
    /// Divergences kept per model (0 = none are looked for).
    limit: usize,
    per_model: Vec<Vec<Divergence>>,
    recent: VecDeque<Decided>,
    cells: Vec<ClusterCell>,
}

/// What the engine knows of a request when a model answers it.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    pub event: u64,
    pub ts_ns: Ts,
    pub cpu: u32,
    pub order: u8,
    pub at_grant: bool,
    pub kernel: Option<SlotRef>,
}

impl Divergences {
    pub fn new(limit: usize, models: usize) -> Self {
        Divergences {
            limit,
            per_model: vec![Vec::new(); if limit > 0 { models } else { 0 }],
            ..Default::default()
        }
    }

    /// Whether divergences are looked for at all.
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// Whether model `i` still wants divergences recorded.
    pub fn wants(&self, i: usize) -> bool {
        self.per_model.get(i).is_some_and(|v| v.len() < self.limit)
    }

    /// Model `i` (`m`) answered `d` with `model` (its first slot, or `None` when it refused):
    /// recorded when it is not the kernel's slot. `real` is the kernel's rebuilt occupancy.
    pub fn answered(
        &mut self,
        i: usize,
        m: &dyn AllocatorModel,
        real: &RealOccupancy,
        d: &Decision,
        model: Option<SlotRef>,
    ) {
        if model == d.kernel || !self.wants(i) {
            return;
        }
        let cluster = |s: SlotRef| s.offset / CLUSTER_SLOTS;
        let real = d.kernel.and_then(|k| {
            self.cells.clear();
            real.cluster_map(k.swap_type, &mut self.cells)
                .then(|| ClusterView::from_cells(&self.cells, cluster(k)))
                .flatten()
        });
        let model_view_of_kernel_cluster = d
            .kernel
            .and_then(|k| ClusterView::of(m, k.swap_type, cluster(k), &mut self.cells));
        let model_cluster =
            model.and_then(|s| ClusterView::of(m, s.swap_type, cluster(s), &mut self.cells));
        let mut before: Vec<Nearby> = self
            .recent
            .iter()
            .rev()
            .take_while(|r| r.nearby.cpu != d.cpu)
            .map(|r| r.nearby)
            .take(MAX_SIDE)
            .collect();
        before.reverse();
        if let Some(v) = self.per_model.get_mut(i) {
            v.push(Divergence {
                event: d.event,
                ts_ns: d.ts_ns,
                cpu: d.cpu,
                order: d.order,
                decided_at: if d.at_grant {
                    DecidedAt::Grant
                } else {
                    DecidedAt::Request
                },
                kernel: d.kernel,
                model,
                model_view_of_kernel_cluster,
                model_cluster,
                kernel_cluster: real,
                before,
                after: Vec::new(),
                closed: false,
            });
        }
    }

    /// Every model has answered `d`: it joins the window and the open divergences' `after`.
    pub fn decided(&mut self, d: &Decision) {
        let nearby = Nearby {
            event: d.event,
            ts_ns: d.ts_ns,
            cpu: d.cpu,
            order: d.order,
            kernel: d.kernel,
        };
        for v in &mut self.per_model {
            for div in v.iter_mut().filter(|div| !div.closed) {
                if div.event == d.event {
                    continue;
                }
                if nearby.cpu == div.cpu || div.after.len() >= MAX_SIDE {
                    div.closed = true;
                } else {
                    div.after.push(nearby);
                }
            }
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Decided { nearby });
    }

    /// Model `i`'s divergences so far.
    pub fn of(&self, i: usize) -> &[Divergence] {
        self.per_model.get(i).map_or(&[], Vec::as_slice)
    }
}

impl SlotRef {
    fn text(r: Option<Self>) -> String {
        match r {
            Some(r) => format!("{}:{}", r.swap_type, r.offset),
            None => "refused".into(),
        }
    }
}

impl ClusterView {
    fn text(v: Option<Self>) -> String {
        match v {
            Some(v) => {
                let order = v.order.map_or(String::new(), |o| format!(" order {o}"));
                format!(
                    "cluster {} ({}, {} used{order})",
                    v.cluster,
                    v.list.as_str(),
                    v.used
                )
            }
            None => "-".into(),
        }
    }
}

impl Nearby {
    fn text(&self) -> String {
        format!(
            "#{} cpu {} order {} -> {}",
            self.event,
            self.cpu,
            self.order,
            SlotRef::text(self.kernel)
        )
    }
}

impl Divergence {
    /// The divergence as the text report prints it: one line for the decision, one for the
    /// clusters, one each for the other CPUs' requests before and after it (when any).
    pub fn text(&self) -> String {
        let mut s = format!(
            "  #{} at {:.6} s, cpu {}, order {}, decided at the {}: kernel {}, model {}\n",
            self.event,
            self.ts_ns as f64 / 1e9,
            self.cpu,
            self.order,
            self.decided_at.as_str(),
            SlotRef::text(self.kernel),
            SlotRef::text(self.model)
        );
        s.push_str(&format!(
            "      kernel's {} (model's view: {}); model's {}\n",
            ClusterView::text(self.kernel_cluster),
            ClusterView::text(self.model_view_of_kernel_cluster),
            ClusterView::text(self.model_cluster)
        ));
        for (what, side) in [("before", &self.before), ("after", &self.after)] {
            if !side.is_empty() {
                let list: Vec<String> = side.iter().map(Nearby::text).collect();
                s.push_str(&format!("      other CPUs {what}: {}\n", list.join("; ")));
            }
        }
        s
    }
}
