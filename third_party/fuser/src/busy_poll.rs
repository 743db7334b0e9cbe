//! Busy polling before sleeping (an agentbox addition to fuser).
//!
//! A thread that has answered a request and finds no next one normally sleeps in `read`
//! on `/dev/fuse`, and the kernel has to wake it for the next request. On virtual
//! machines an idle virtual CPU halts, and waking it costs tens of microseconds, several
//! times what a simple request takes to serve; a program that stats or creates files one
//! after another pays that on every call. With polling, one thread of the session at a
//! time watches the device (`poll` with no timeout, which does not consume the request)
//! for a while before it goes to sleep, so a request that follows closely is picked up by
//! a thread that is already running.
//!
//! How long it watches adapts, as the kernel's own halt polling (cpuidle-haltpoll) does,
//! from how long the wait for the next request turned out to be, polling and sleep
//! together: longer than the configured maximum, the window halves (down to nothing);
//! longer than the window but within the maximum, so that a longer window would have
//! caught the request, it doubles (up to the maximum). Requests that come in bursts keep
//! a window that catches them; sparse ones soon cost no polling at all. With a zero
//! maximum the session behaves as upstream fuser.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The polling state of a session, shared by its threads.
#[derive(Debug, Clone)]
pub(crate) struct BusyPoll {
    max: Duration,
    /// The current window, in nanoseconds.
    window: Arc<AtomicU64>,
    /// One of the session's threads is polling now.
    polling: Arc<AtomicBool>,
}

/// A window that has shrunk below this is dropped to nothing.
const SMALLEST: Duration = Duration::from_micros(10);

/// A window that grows from nothing starts at this (as haltpoll's `grow_start`).
const GROW_START: Duration = Duration::from_micros(50);

impl BusyPoll {
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            max,
            window: Arc::new(AtomicU64::new(duration_ns(max))),
            polling: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Returns once `device` has a request to read, or the window has passed, or another
    /// thread of the session is already the one polling. The caller then reads as usual
    /// (blocking), so a request taken by another thread in between costs nothing but a
    /// normal sleep. When this thread was the one to poll and found nothing, returns when
    /// its wait began, for [`BusyPoll::slept`] once the read returns.
    pub(crate) fn wait_readable(&self, device: &impl AsFd) -> Option<Instant> {
        if self.max.is_zero() || self.polling.swap(true, Ordering::Acquire) {
            return None;
        }
        let began = Instant::now();
        let window = Duration::from_nanos(self.window.load(Ordering::Relaxed));
        let found = !window.is_zero() && poll_for(device, window);
        self.polling.store(false, Ordering::Release);
        (!found).then_some(began)
    }

    /// After a wait that began at `began` (see [`BusyPoll::wait_readable`]) and ended in
    /// a sleep: adapts the window to how long the wait was.
    pub(crate) fn slept(&self, began: Instant) {
        let waited = began.elapsed();
        let window = Duration::from_nanos(self.window.load(Ordering::Relaxed));
        let adapted = if waited > self.max {
            let halved = window / 2;
            if halved < SMALLEST { Duration::ZERO } else { halved }
        } else if waited > window {
            (window * 2).max(GROW_START).min(self.max)
        } else {
            return;
        };
        self.window.store(duration_ns(adapted), Ordering::Relaxed);
    }
}

/// Watches `device` for up to `window`; says whether it has something to read (or an
/// error, which the read will report).
fn poll_for(device: &impl AsFd, window: Duration) -> bool {
    let deadline = Instant::now() + window;
    loop {
        let mut fds = [PollFd::new(device.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(ready) if ready > 0 => return true,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::hint::spin_loop();
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
