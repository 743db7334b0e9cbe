//! Busy polling before sleeping (an agentbox addition to fuser).
//!
//! A thread that has answered a request and finds no next one normally sleeps in `read`
//! on `/dev/fuse`, and the kernel has to wake it for the next request. On virtual
//! machines an idle virtual CPU halts, and waking it costs tens of microseconds, several
//! times what a simple request takes to serve; a program that stats or creates files one
//! after another pays that on every call. With a polling window, one thread of the session
//! at a time watches the device (`poll` with no timeout, which does not consume the
//! request) for up to the window before it goes to sleep, so a request that follows
//! closely is picked up by a thread that is already running. The window bounds the CPU
//! time spent waiting; with a zero window the session behaves as upstream fuser.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The polling window of a session, and whether one of its threads is polling now.
#[derive(Debug, Clone)]
pub(crate) struct BusyPoll {
    window: Duration,
    polling: Arc<AtomicBool>,
}

impl BusyPoll {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            polling: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Returns once `device` has a request to read, or the window has passed, or another
    /// thread of the session is already the one polling. The caller then reads as usual
    /// (blocking), so a request taken by another thread in between costs nothing but a
    /// normal sleep.
    pub(crate) fn wait_readable(&self, device: &impl AsFd) {
        if self.window.is_zero() || self.polling.swap(true, Ordering::Acquire) {
            return;
        }
        let deadline = Instant::now() + self.window;
        loop {
            let mut fds = [PollFd::new(device.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                // Readable, or an error (unmounted) that the read will report.
                Ok(ready) if ready > 0 => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::hint::spin_loop();
        }
        self.polling.store(false, Ordering::Release);
    }
}
