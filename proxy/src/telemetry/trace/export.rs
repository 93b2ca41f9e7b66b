//! The bounded queue between finished spans and the exporter.
//!
//! A span ends on the request path with one `try_send` into a bounded
//! channel: never a wait, never a lock held across I/O. One Tokio task
//! gathers batches and exports them one at a time, each bounded by a
//! timeout. When the collector is slow or away the queue fills and further
//! spans are dropped and counted, and requests go on at full speed.
//!
//! Written here rather than taken from the SDK's `BatchSpanProcessor`
//! because that one keeps its dropped-span count private (it only logs it
//! at shutdown) and runs its own OS thread that drives the async tonic
//! exporter with `block_on`; this one runs on the proxy's runtime and counts
//! everything in [`ExportStats`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

/// Counters of the export pipeline, for the admin page and metrics.
#[derive(Debug, Default)]
pub(crate) struct ExportStats {
    /// Spans the collector accepted.
    pub(crate) exported: AtomicU64,
    /// Spans dropped because the queue was full (or export had stopped).
    pub(crate) dropped: AtomicU64,
    /// Spans lost in exports that failed or timed out.
    pub(crate) failed: AtomicU64,
}

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueSettings {
    pub(crate) max_queue_size: usize,
    pub(crate) max_export_batch_size: usize,
    pub(crate) scheduled_delay: Duration,
    pub(crate) export_timeout: Duration,
}

/// Requests to the export task, on their own unbounded channel so that a
/// full span queue never loses them.
enum Control {
    Resource(Resource),
    Flush(oneshot::Sender<()>),
    Shutdown(Option<oneshot::Sender<()>>),
}

/// The handle the tracer keeps to flush and stop the export task.
#[derive(Debug, Clone)]
pub(crate) struct ExportHandle {
    control: mpsc::UnboundedSender<Control>,
}

impl ExportHandle {
    /// Exports everything queued so far; resolves when that export ended.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.control.send(Control::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Exports what is queued, then stops the task; resolves when it has.
    pub(crate) async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.control.send(Control::Shutdown(Some(done))).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The SDK span processor: hands sampled spans to the export task.
#[derive(Debug)]
pub(crate) struct QueueProcessor {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<ExportStats>,
}

impl QueueProcessor {
    /// Spawns the export task on the current Tokio runtime.
    pub(crate) fn spawn<E>(
        exporter: E,
        settings: QueueSettings,
        stats: Arc<ExportStats>,
    ) -> (Self, ExportHandle)
    where
        E: SpanExporter + 'static,
    {
        let (spans, spans_rx) = mpsc::channel(settings.max_queue_size.max(1));
        let (control, control_rx) = mpsc::unbounded_channel();
        let worker = Worker {
            exporter,
            settings,
            stats: Arc::clone(&stats),
            failing: AtomicBool::new(false),
        };
        tokio::spawn(worker.run(spans_rx, control_rx));
        let handle = ExportHandle {
            control: control.clone(),
        };
        (
            Self {
                spans,
                control,
                stats,
            },
            handle,
        )
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks for an export without waiting: this runs on runtime threads,
    /// where blocking on the export task could deadlock it.
    /// [`ExportHandle::flush`] is the waiting kind.
    fn force_flush(&self) -> OTelSdkResult {
        let (done, _) = oneshot::channel();
        let _ = self.control.send(Control::Flush(done));
        Ok(())
    }

    /// Asks the export task to send what it has and stop, without waiting
    /// (see [`QueueProcessor::force_flush`]).
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        let _ = self.control.send(Control::Shutdown(None));
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.control.send(Control::Resource(resource.clone()));
    }
}

/// The export task's state.
struct Worker<E> {
    exporter: E,
    settings: QueueSettings,
    stats: Arc<ExportStats>,
    /// Whether the last export failed: failures are logged once per outage.
    failing: AtomicBool,
}

impl<E: SpanExporter> Worker<E> {
    async fn run(
        mut self,
        mut spans: mpsc::Receiver<SpanData>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let mut batch = Vec::with_capacity(self.settings.max_export_batch_size);
        let mut tick = tokio::time::interval(self.settings.scheduled_delay);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Control first: the resource arrives before any span.
                biased;
                request = control.recv() => match request {
                    Some(Control::Resource(resource)) => self.exporter.set_resource(&resource),
                    Some(Control::Flush(done)) => {
                        self.drain(&mut spans, &mut batch).await;
                        let _ = done.send(());
                    }
                    Some(Control::Shutdown(done)) => {
                        self.drain(&mut spans, &mut batch).await;
                        let _ = self.exporter.shutdown();
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                    // Every handle is gone: the tracer is dropped.
                    None => {
                        self.drain(&mut spans, &mut batch).await;
                        return;
                    }
                },
                span = spans.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= self.settings.max_export_batch_size {
                            self.export(&mut batch).await;
                        }
                    }
                    None => {
                        self.export(&mut batch).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.export(&mut batch).await;
                    }
                }
            }
        }
    }

    /// Exports everything queued until now.
    async fn drain(&self, spans: &mut mpsc::Receiver<SpanData>, batch: &mut Vec<SpanData>) {
        while let Ok(span) = spans.try_recv() {
            batch.push(span);
            if batch.len() >= self.settings.max_export_batch_size {
                self.export(batch).await;
            }
        }
        self.export(batch).await;
    }

    async fn export(&self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(
            batch,
            Vec::with_capacity(self.settings.max_export_batch_size),
        );
        let count = spans.len() as u64;
        let result =
            tokio::time::timeout(self.settings.export_timeout, self.exporter.export(spans)).await;
        let error = match result {
            Ok(Ok(())) => {
                self.stats.exported.fetch_add(count, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("span export recovered");
                }
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("timed out after {:?}", self.settings.export_timeout),
        };
        self.stats.failed.fetch_add(count, Ordering::Relaxed);
        if self.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(%error, spans = count, "span export failed");
        } else {
            tracing::warn!(%error, spans = count, "span export failed; spans are lost until the collector answers");
        }
    }
}

#[cfg(test)]
mod tests;
