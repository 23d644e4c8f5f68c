//! The engine on several threads: the models split into groups, each group in its own
//! [`Engine`] fed the same batches, the reports merged back in model order. Every model still
//! sees the whole stream in order and every engine rebuilds the real occupancy (which decides
//! what the models are given back when a free was missed), so the merged report is the one a
//! single engine would write, whatever the number of threads.

use std::{sync::Arc, sync::mpsc, thread::JoinHandle};

use super::{Comparison, Engine, EngineConfig, MarkerReport};
use crate::{alloc::AllocatorModel, event::Event};

/// Batches in flight per worker (each up to a chunk's worth of events, shared by the workers).
const IN_FLIGHT: usize = 2;

struct Worker {
    tx: Option<mpsc::SyncSender<Arc<Vec<Event>>>>,
    handle: Option<JoinHandle<Engine>>,
    /// Positions of this worker's models in the caller's order.
    models: Vec<usize>,
}

/// See the module documentation.
pub struct Parallel {
    workers: Vec<Worker>,
    n_models: usize,
}

/// What a finished parallel engine hands back.
pub struct Finished {
    pub report: Comparison,
    /// The engines, one per thread.
    pub engines: Vec<Engine>,
    /// For each model, in the caller's order: which engine holds it and at which index.
    pub placement: Vec<(usize, usize)>,
}

impl Parallel {
    /// Splits `models` over `threads` engines (at least one, at most one per model; models
    /// assigned in turn), each on its own thread.
    pub fn new(
        models: Vec<Box<dyn AllocatorModel>>,
        config: EngineConfig,
        threads: usize,
    ) -> std::io::Result<Self> {
        let n_models = models.len();
        let threads = threads.clamp(1, n_models.max(1));
        // Per thread: the models' positions in the caller's order, and the models.
        type Group = (Vec<usize>, Vec<Box<dyn AllocatorModel>>);
        let mut groups: Vec<Group> = (0..threads).map(|_| (Vec::new(), Vec::new())).collect();
        for (i, m) in models.into_iter().enumerate() {
            if let Some(g) = groups.get_mut(i % threads) {
                g.0.push(i);
                g.1.push(m);
            }
        }
        let mut workers = Vec::new();
        for (idx, mods) in groups {
            let (tx, rx) = mpsc::sync_channel::<Arc<Vec<Event>>>(IN_FLIGHT);
            let handle = std::thread::Builder::new()
                .name("swapscope-engine".into())
                .spawn(move || {
                    let mut e = Engine::new(mods, config);
                    for batch in rx {
                        for ev in batch.iter() {
                            e.feed(ev);
                        }
                    }
                    e.end_holds();
                    e
                })?;
            workers.push(Worker {
                tx: Some(tx),
                handle: Some(handle),
                models: idx,
            });
        }
        Ok(Parallel { workers, n_models })
    }

    /// Feeds a batch to every engine (a copy of it, shared by them).
    pub fn feed_batch(&mut self, batch: &[Event]) {
        self.feed_shared(&Arc::new(batch.to_vec()));
    }

    /// Feeds a batch to every engine without copying it.
    pub fn feed_shared(&mut self, batch: &Arc<Vec<Event>>) {
        for w in &self.workers {
            if let Some(tx) = &w.tx {
                // A worker that stopped (it panicked) is found at `finish`.
                let _ = tx.send(batch.clone());
            }
        }
    }

    /// Waits for the engines and merges their reports in model order. `None` when a worker
    /// thread panicked.
    pub fn finish(mut self) -> Option<Finished> {
        let mut engines = Vec::new();
        let mut placement = vec![(0, 0); self.n_models];
        for (wi, w) in self.workers.iter_mut().enumerate() {
            w.tx = None;
            let e = w.handle.take()?.join().ok()?;
            for (k, &global) in w.models.iter().enumerate() {
                if let Some(p) = placement.get_mut(global) {
                    *p = (wi, k);
                }
            }
            engines.push(e);
        }
        let reports: Vec<Comparison> = engines.iter().map(Engine::report).collect();
        let first = reports.first()?;
        let pick = |f: &dyn Fn(&Comparison) -> Vec<super::ModelReport>| {
            placement
                .iter()
                .filter_map(|&(w, k)| reports.get(w).and_then(|r| f(r).get(k).cloned()))
                .collect::<Vec<_>>()
        };
        let models = pick(&|r| r.models.clone());
        // Every engine saw the same stream, so the same rows: each row's models come from the
        // engine that ran them.
        let merge =
            |rows: &dyn Fn(&Comparison) -> Option<&Vec<MarkerReport>>| -> Vec<MarkerReport> {
                rows(first)
                    .map(|v| v.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let mut m = m.clone();
                        m.models = placement
                            .iter()
                            .filter_map(|&(w, k)| {
                                rows(reports.get(w)?)?.get(i)?.models.get(k).cloned()
                            })
                            .collect();
                        m
                    })
                    .collect()
            };
        let markers = merge(&|r| Some(&r.markers));
        let intervals = merge(&|r| Some(&r.intervals));
        let peak = first.peak.clone().map(|mut p| {
            p.models = placement
                .iter()
                .filter_map(|&(w, k)| reports.get(w)?.peak.as_ref()?.models.get(k).cloned())
                .collect();
            p
        });
        let series = first
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                s.models = placement
                    .iter()
                    .filter_map(|&(w, k)| reports.get(w)?.series.get(i)?.models.get(k).cloned())
                    .collect();
                s
            })
            .collect();
        // Every stream figure is the same in each engine but this one, which counts what the
        // model of the recorded kernel did, in whichever engine holds it.
        let mut stream = first.stream;
        stream.interleaved_cursor_reads = reports
            .iter()
            .map(|r| r.stream.interleaved_cursor_reads)
            .sum();
        let report = Comparison {
            events: first.events,
            stream,
            models,
            real: first.real.clone(),
            markers,
            intervals,
            peak,
            series,
            model_device_bytes: first.model_device_bytes.clone(),
        };
        Some(Finished {
            report,
            engines,
            placement,
        })
    }
}

impl Drop for Parallel {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.tx = None;
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}
