//! A simulated workload as a source: the generator runs on a second thread and hands batches
//! over a bounded channel, so a stream of any length is never held whole.

use super::{
    Poll, Source, SourceError, Summary,
    background::{Background, Sender},
};
use crate::{
    alloc::{self, AllocatorModel, Extent},
    engine::{StreamMap, stream_key},
    event::{Alloc, AllocResult, Event, Free, virtual_slot},
    record::RecordingHeader,
    workload::{self, WorkloadSpec},
};

/// Batches in flight between the generator and the consumer.
const IN_FLIGHT: usize = 4;

/// The events of one workload.
pub struct SimSource {
    header: RecordingHeader,
    generator: Background,
}

impl SimSource {
    /// Checks `spec` and starts generating.
    pub fn new(spec: WorkloadSpec) -> Result<Self, SourceError> {
        workload::validate(&spec)?;
        let header = RecordingHeader {
            source: format!("simulate:{}", spec.name),
            nr_cpus: spec.cpus,
            // What generated the stream, kept in a recording of it (`simulate -o`).
            extra: vec![
                ("workload/seed".into(), spec.seed.to_string()),
                (
                    "workload/swap_size_bytes".into(),
                    spec.swap_size_bytes.to_string(),
                ),
                ("workload/swapin".into(), spec.swapin.as_str().into()),
                ("workload/aligned_swapin".into(), spec.aligned.to_string()),
                ("workload/small_area".into(), spec.small.to_string()),
            ],
            ..RecordingHeader::default()
        };
        let generator = Background::spawn("simulate", IN_FLIGHT, move |tx: Sender| {
            // `validate` passed above, so the only error left is a closed channel.
            let _ = workload::stream(&spec, &mut |batch| {
                tx.send(Ok(std::mem::replace(
                    batch,
                    Vec::with_capacity(workload::BATCH),
                )))
            });
            Summary::default()
        })?;
        Ok(SimSource { header, generator })
    }

    /// Sets the command line the header keeps (what `simulate -o` records).
    pub fn set_command_line(&mut self, line: String) {
        self.header.command_line = line;
    }
}

impl Source for SimSource {
    fn header(&self) -> &RecordingHeader {
        &self.header
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> Result<Poll, SourceError> {
        self.generator.poll(out)
    }

    fn stop(&mut self) {
        self.generator.stop();
    }

    fn summary(&self) -> Summary {
        self.generator.summary()
    }
}

/// A simulated stream as a kernel with the full probe tier would record it: `model` answers
/// every request (a refused large request is followed by one order-0 request per page, as after
/// `split_folio`, through [`alloc::serve_folio`]), and every virtual free becomes frees of the
/// slots the model gave. `cargo xtask bench` uses it to make a "kernel" recording that also
/// exercises the real-occupancy path.
pub struct Answered<S: Source> {
    inner: S,
    header: RecordingHeader,
    model: Box<dyn AllocatorModel>,
    map: StreamMap,
    scratch: Vec<Extent>,
    batch: Vec<Event>,
}

impl<S: Source> Answered<S> {
    pub fn new(inner: S, model: Box<dyn AllocatorModel>) -> Self {
        let mut header = inner.header().clone();
        header.source = format!(
            "{} answered by {}",
            header.source.replacen("simulate:", "bench:", 1),
            model.name()
        );
        Answered {
            inner,
            header,
            model,
            map: StreamMap::new(),
            scratch: Vec::new(),
            batch: Vec::new(),
        }
    }

    pub fn set_command_line(&mut self, line: String) {
        self.header.command_line = line;
    }

    fn answer(&mut self, ev: &Event, out: &mut Vec<Event>) {
        match ev {
            Event::SwapOn(on) => {
                self.model.swapon(on);
                out.push(ev.clone());
            }
            Event::Alloc(a) if a.result == AllocResult::Unknown => {
                let Some(key) = stream_key(virtual_slot::SWAP_TYPE, virtual_slot::offset(a.id, 0))
                else {
                    return;
                };
                let map = &mut self.map;
                alloc::serve_folio(
                    self.model.as_mut(),
                    alloc::Cpus::on(a.cpu),
                    a.order,
                    &mut self.scratch,
                    |r| {
                        let result = match r.extents.and_then(|e| e.first()) {
                            Some(e) => AllocResult::Success {
                                swap_type: e.swap_type,
                                offset: e.offset,
                            },
                            None => AllocResult::Failure,
                        };
                        out.push(Event::Alloc(Alloc {
                            order: r.order,
                            result,
                            ..*a
                        }));
                        if let Some(ext) = r.extents {
                            map.insert(key + r.page, ext);
                        }
                    },
                );
            }
            Event::Free(f) if f.swap_type == virtual_slot::SWAP_TYPE => {
                let Some(key) = stream_key(f.swap_type, f.offset) else {
                    return;
                };
                let model = &mut self.model;
                self.map.remove(key, u64::from(f.nr), |t, off, nr| {
                    model.free(t, off, nr);
                    out.push(Event::Free(Free {
                        swap_type: t,
                        offset: off,
                        nr,
                        ..*f
                    }));
                });
            }
            _ => out.push(ev.clone()),
        }
    }
}

impl<S: Source> Source for Answered<S> {
    fn header(&self) -> &RecordingHeader {
        &self.header
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> Result<Poll, SourceError> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        let p = self.inner.poll(&mut batch)?;
        for ev in &batch {
            self.answer(ev, out);
        }
        self.batch = batch;
        Ok(p)
    }

    fn stop(&mut self) {
        self.inner.stop();
    }

    fn summary(&self) -> Summary {
        self.inner.summary()
    }
}
