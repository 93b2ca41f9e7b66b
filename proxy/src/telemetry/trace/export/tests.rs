use super::*;
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
use std::sync::Mutex;
use std::time::SystemTime;

/// An exporter that records batches, or hangs when told to.
#[derive(Debug, Clone, Default)]
struct Recorder {
    batches: Arc<Mutex<Vec<usize>>>,
    hang: bool,
}

impl SpanExporter for Recorder {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.hang {
            std::future::pending::<()>().await;
        }
        self.batches.lock().expect("not poisoned").push(batch.len());
        Ok(())
    }
}

fn span(sampled: bool) -> SpanData {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            flags,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: "GET".into(),
        start_time: SystemTime::now(),
        end_time: SystemTime::now(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::default(),
    }
}

fn settings(queue: usize, batch: usize) -> QueueSettings {
    QueueSettings {
        max_queue_size: queue,
        max_export_batch_size: batch,
        scheduled_delay: Duration::from_secs(3600),
        export_timeout: Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn flush_exports_queued_spans_in_batches() {
    let recorder = Recorder::default();
    let stats = Arc::new(ExportStats::default());
    let (processor, handle) =
        QueueProcessor::spawn(recorder.clone(), settings(100, 4), Arc::clone(&stats));
    for _ in 0..10 {
        processor.on_end(span(true));
    }
    processor.on_end(span(false));
    handle.flush().await;
    assert_eq!(*recorder.batches.lock().expect("not poisoned"), [4, 4, 2]);
    assert_eq!(stats.exported.load(Ordering::Relaxed), 10);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn scheduled_delay_sends_a_partial_batch() {
    let recorder = Recorder::default();
    let stats = Arc::new(ExportStats::default());
    let mut settings = settings(100, 50);
    settings.scheduled_delay = Duration::from_secs(1);
    let (processor, _handle) = QueueProcessor::spawn(recorder.clone(), settings, stats);
    processor.on_end(span(true));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(*recorder.batches.lock().expect("not poisoned"), [1]);
}

#[tokio::test(start_paused = true)]
async fn hanging_exporter_fills_the_queue_and_drops_are_counted() {
    let recorder = Recorder {
        hang: true,
        ..Recorder::default()
    };
    let stats = Arc::new(ExportStats::default());
    let mut settings = settings(8, 2);
    settings.export_timeout = Duration::from_secs(5);
    let (processor, _handle) = QueueProcessor::spawn(recorder, settings, Arc::clone(&stats));
    // Let the task take one batch of 2 into the hanging export.
    processor.on_end(span(true));
    processor.on_end(span(true));
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    for _ in 0..100 {
        processor.on_end(span(true));
    }
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 100 - 8);
    // The export is given up after its timeout; its spans count as failed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(stats.failed.load(Ordering::Relaxed) >= 2);
}
