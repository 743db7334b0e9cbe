//! Running numbered jobs on a fixed number of threads: concurrent clients, and populating
//! trees quickly.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;

/// Runs `job(0)` .. `job(count - 1)` on `threads` threads, each taking the next index
/// as it finishes one. Stops handing out work after the first error, which it returns.
pub fn for_each_index<F>(threads: usize, count: usize, job: F) -> Result<()>
where
    F: Fn(usize) -> Result<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    if let Err(error) = job(i) {
                        next.store(count, Ordering::Relaxed);
                        let mut slot = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        slot.get_or_insert(error);
                        break;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_index_once() {
        let seen = Mutex::new(Vec::new());
        for_each_index(4, 100, |i| {
            seen.lock().unwrap().push(i);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn returns_the_error() {
        let result = for_each_index(3, 50, |i| {
            if i == 7 {
                anyhow::bail!("job {i} failed");
            }
            Ok(())
        });
        assert_eq!(result.unwrap_err().to_string(), "job 7 failed");
    }
}
