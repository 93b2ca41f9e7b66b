//! The state of a listener's connections, shared by the admission
//! ([`super::admit`]: the listener's limit, eviction, the plaintext share)
//! and the watchdog ([`super::watchdog`]: the timeouts): a connection's
//! [`Activity`] and its listener's [`ConnectionLimit`], which refer to each
//! other. The types live here, below both, and each side adds its own
//! logic: neither imports the other's types.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use crate::telemetry::stats::ListenerStats;

/// What a connection is doing, as far as its timeouts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Accepted; the protocol is not known yet.
    Detecting = 0,
    /// Serving HTTP/1.
    Http1 = 1,
    /// Serving HTTP/2.
    Http2 = 2,
    /// Forwarding opaque TCP.
    Tcp = 3,
}

impl Phase {
    pub(super) fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Http1,
            2 => Self::Http2,
            3 => Self::Tcp,
            _ => Self::Detecting,
        }
    }
}

/// What the watchdog reads about one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    pub(super) read: AtomicU64,
    pub(super) written: AtomicU64,
    /// Requests whose handler is running.
    pub(super) streams: AtomicU32,
    /// Requests handed over so far.
    pub(super) started: AtomicU64,
    /// `read` when the last request in flight ended: more bytes than this
    /// with no request in flight are the head of the next one.
    pub(super) idle_mark: AtomicU64,
    pub(super) phase: AtomicU8,
    /// Wakes the watchdog: an eviction while detecting, or a new phase.
    pub(super) evict: Notify,
    /// Told to close for a newer connection ([`super::admit`]).
    pub(super) evicted: std::sync::atomic::AtomicBool,
    pub(super) limit: Arc<ConnectionLimit>,
    /// Counted against the listener's plaintext share.
    pub(super) plaintext: std::sync::atomic::AtomicBool,
}

impl Activity {
    pub(super) fn new(limit: Arc<ConnectionLimit>) -> Self {
        Self {
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            streams: AtomicU32::new(0),
            started: AtomicU64::new(0),
            idle_mark: AtomicU64::new(0),
            phase: AtomicU8::new(Phase::Detecting as u8),
            evict: Notify::new(),
            evicted: std::sync::atomic::AtomicBool::new(false),
            limit,
            plaintext: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Moves to `phase`, and wakes the watchdog so that it follows the
    /// new phase's bounds rather than sleeping out the old one's.
    pub(super) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.evict.notify_one();
    }

    /// A request handed to the handler; in flight until the guard drops.
    pub(crate) fn stream(self: &Arc<Self>) -> Stream {
        self.streams.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        Stream(Arc::clone(self))
    }

    /// Bytes read and written so far.
    pub(super) fn moved(&self) -> u64 {
        self.read.load(Ordering::Relaxed) + self.written.load(Ordering::Relaxed)
    }
}

/// A request in flight on a connection (see [`Activity::stream`]).
#[derive(Debug)]
pub(crate) struct Stream(Arc<Activity>);

impl Drop for Stream {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            let read = activity.read.load(Ordering::Relaxed);
            activity.idle_mark.store(read, Ordering::Relaxed);
        }
    }
}

/// The connections of one listener.
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    pub(super) name: &'static str,
    pub(super) stats: &'static ListenerStats,
    pub(super) max: usize,
    pub(super) plaintext_max: usize,
    pub(super) open: AtomicUsize,
    pub(super) plaintext: AtomicUsize,
    /// Connections in the order they were accepted, for eviction: those
    /// past detection or closed are skipped, and pruned as the queue grows.
    pub(super) detecting: Mutex<VecDeque<Weak<Activity>>>,
}
