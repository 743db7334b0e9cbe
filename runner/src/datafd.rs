//! Bytes handed to bubblewrap through file descriptors (`--ro-bind-data FD`, `--seccomp
//! FD`): each is an anonymous memory file (`memfd`), written whole and rewound, that the
//! run's bwrap process inherits and reads to its end; and the pipes for what is only known
//! later (`--args FD`, the code, the network's report and go-ahead).

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pipe whose both ends close on exec: `(read, write)`. The child's end is made
/// inheritable in the child, like a data file.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = io::pipe()?;
    Ok((OwnedFd::from(read), OwnedFd::from(write)))
}

/// An anonymous file holding `bytes`, positioned at its start, closed on exec unless
/// [`inheritable`] clears that in the child.
pub fn data_fd(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; memfd_create returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

/// In a child between fork and exec: lets `fds` survive the exec. Async-signal-safe.
pub fn inheritable(fds: &[RawFd]) -> io::Result<()> {
    for &fd in fds {
        // SAFETY: fcntl on a descriptor number touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The raw numbers of `fds`, for the bwrap command line and [`inheritable`].
pub fn raw(fds: &[&OwnedFd]) -> Vec<RawFd> {
    fds.iter().map(|fd| fd.as_raw_fd()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn reads_back_from_the_start() {
        let fd = data_fd(c"test", b"print(42)\n").unwrap();
        let mut text = String::new();
        File::from(fd).read_to_string(&mut text).unwrap();
        assert_eq!(text, "print(42)\n");
    }
}
