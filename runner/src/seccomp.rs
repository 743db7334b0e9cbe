//! The seccomp filter every run's code executes under, as a classic BPF program that
//! bubblewrap loads (`--seccomp FD`) right before it executes the code.
//!
//! The filter allows by default and refuses, with `EPERM`, what an unprivileged process has
//! no business doing in a sandbox: the mount family, `unshare`/`setns` and clone flags that
//! create namespaces, `ptrace` and cross-process memory access, `bpf`, `keyctl`,
//! `perf_event_open`, `userfaultfd`, kernel modules, `kexec`, `reboot`, swap, and the
//! `TIOCSTI` / `TIOCLINUX` ioctls (compared on the low 32 bits of the request, as the kernel
//! does). `clone3` answers `ENOSYS` because its flags sit behind a pointer a filter cannot
//! read; the C library then falls back to `clone`, whose flags are checked. A program
//! built for another architecture is killed, and x32 system calls (numbers with bit 30
//! set) are refused.

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// System call numbers at or above this are x32 calls.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// The low 32 bits of argument `n` (little endian).
const fn offset_arg_low(n: u32) -> u32 {
    16 + 8 * n
}

/// Namespace-creating clone flags: `CLONE_NEWNS`, `CLONE_NEWCGROUP`, `CLONE_NEWUTS`,
/// `CLONE_NEWIPC`, `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET` and `CLONE_NEWTIME`.
const NAMESPACE_CLONE_FLAGS: u32 = 0x0002_0000
    | 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x0000_0080;

/// x86-64 system calls refused outright, by name and number.
pub const DENIED_SYSCALLS: &[(&str, u32)] = &[
    // The mount family.
    ("mount", 165),
    ("umount2", 166),
    ("pivot_root", 155),
    ("chroot", 161),
    ("open_tree", 428),
    ("move_mount", 429),
    ("fsopen", 430),
    ("fsconfig", 431),
    ("fsmount", 432),
    ("fspick", 433),
    ("mount_setattr", 442),
    // Namespaces.
    ("unshare", 272),
    ("setns", 308),
    // Other processes' memory.
    ("ptrace", 101),
    ("process_vm_readv", 310),
    ("process_vm_writev", 311),
    // Kernel attack surface.
    ("bpf", 321),
    ("keyctl", 250),
    ("add_key", 248),
    ("request_key", 249),
    ("perf_event_open", 298),
    ("userfaultfd", 323),
    ("init_module", 175),
    ("finit_module", 313),
    ("delete_module", 176),
    ("kexec_load", 246),
    ("kexec_file_load", 320),
    ("reboot", 169),
    ("swapon", 167),
    ("swapoff", 168),
    ("acct", 163),
    ("open_by_handle_at", 304),
    ("syslog", 103),
];

const SYS_CLONE: u32 = 56;
const SYS_CLONE3: u32 = 435;
const SYS_IOCTL: u32 = 16;

/// ioctl requests refused: `TIOCSTI` (push bytes into a terminal's input) and `TIOCLINUX`.
const DENIED_IOCTLS: &[u32] = &[0x5412, 0x541c];

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

/// One BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `BPF_LD | BPF_W | BPF_ABS` (the first two are 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

fn load(offset: u32) -> Instruction {
    Instruction {
        code: BPF_LD_W_ABS,
        jt: 0,
        jf: 0,
        k: offset,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

fn ret(k: u32) -> Instruction {
    Instruction {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k,
    }
}

fn errno(value: i32) -> u32 {
    RET_ERRNO | (value as u32 & 0xffff)
}

/// The filter as instructions.
fn program() -> Vec<Instruction> {
    let mut p = vec![
        load(OFFSET_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        ret(RET_KILL_PROCESS),
        load(OFFSET_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        ret(errno(libc::EPERM)),
    ];
    for &(_, nr) in DENIED_SYSCALLS {
        p.push(jump(BPF_JMP_JEQ_K, nr, 0, 1));
        p.push(ret(errno(libc::EPERM)));
    }
    p.push(jump(BPF_JMP_JEQ_K, SYS_CLONE3, 0, 1));
    p.push(ret(errno(libc::ENOSYS)));
    // clone: refuse namespace flags in its first argument.
    p.push(jump(BPF_JMP_JEQ_K, SYS_CLONE, 0, 4));
    p.push(load(offset_arg_low(0)));
    p.push(jump(BPF_JMP_JSET_K, NAMESPACE_CLONE_FLAGS, 0, 1));
    p.push(ret(errno(libc::EPERM)));
    p.push(ret(RET_ALLOW));
    // ioctl: refuse the terminal-injection requests, whatever the upper 32 bits say.
    let checks = DENIED_IOCTLS.len() as u8;
    p.push(jump(BPF_JMP_JEQ_K, SYS_IOCTL, 0, 2 * checks + 2));
    p.push(load(offset_arg_low(1)));
    for &request in DENIED_IOCTLS {
        p.push(jump(BPF_JMP_JEQ_K, request, 0, 1));
        p.push(ret(errno(libc::EPERM)));
    }
    p.push(ret(RET_ALLOW));
    p.push(ret(RET_ALLOW));
    p
}

/// The filter in the binary form `bwrap --seccomp` reads: `struct sock_filter` entries in
/// native byte order.
pub fn filter_bytes() -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in program() {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// Every jump lands inside the program and the program ends in a return.
    #[test]
    fn jumps_stay_inside_the_program() {
        let p = program();
        for (at, i) in p.iter().enumerate() {
            if i.code & 0x07 == 0x05 {
                assert!(at + 1 + (i.jt as usize) < p.len(), "jt at {at}");
                assert!(at + 1 + (i.jf as usize) < p.len(), "jf at {at}");
            }
        }
        assert_eq!(p.last().unwrap().code, BPF_RET_K);
        assert!(p.len() < 4096);
    }

    #[test]
    fn the_numbers_are_the_x86_64_ones() {
        let number = |name: &str| {
            DENIED_SYSCALLS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(_, nr)| nr as libc::c_long)
                .unwrap()
        };
        assert_eq!(number("mount"), libc::SYS_mount);
        assert_eq!(number("unshare"), libc::SYS_unshare);
        assert_eq!(number("setns"), libc::SYS_setns);
        assert_eq!(number("ptrace"), libc::SYS_ptrace);
        assert_eq!(number("bpf"), libc::SYS_bpf);
        assert_eq!(number("keyctl"), libc::SYS_keyctl);
        assert_eq!(number("perf_event_open"), libc::SYS_perf_event_open);
        assert_eq!(number("userfaultfd"), libc::SYS_userfaultfd);
        assert_eq!(number("finit_module"), libc::SYS_finit_module);
        assert_eq!(number("reboot"), libc::SYS_reboot);
        assert_eq!(number("open_tree"), libc::SYS_open_tree);
        assert_eq!(number("fsopen"), libc::SYS_fsopen);
        assert_eq!(SYS_CLONE as libc::c_long, libc::SYS_clone);
        assert_eq!(SYS_CLONE3 as libc::c_long, libc::SYS_clone3);
        assert_eq!(SYS_IOCTL as libc::c_long, libc::SYS_ioctl);
        assert_eq!(
            DENIED_IOCTLS,
            &[libc::TIOCSTI as u32, libc::TIOCLINUX as u32]
        );
        let flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWCGROUP
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | 0x80;
        assert_eq!(NAMESPACE_CLONE_FLAGS, flags as u32);
    }

    /// Runs `sh -c script` under the filter (loaded the way bwrap loads it, after
    /// `PR_SET_NO_NEW_PRIVS`) and returns its exit status and stderr.
    fn under_filter(script: &str) -> (i32, String) {
        let bytes = filter_bytes();
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        // SAFETY: prctl and the seccomp system call are async-signal-safe and only read
        // `bytes`, which the parent keeps alive until the child has executed.
        unsafe {
            let bytes = bytes.clone();
            command.pre_exec(move || {
                let program = libc::sock_fprog {
                    len: (bytes.len() / 8) as u16,
                    filter: bytes.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0,
                        &program as *const libc::sock_fprog,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let output = command.output().expect("run /bin/sh under the filter");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    #[test]
    fn ordinary_programs_run_under_the_filter() {
        let (status, stderr) = under_filter("echo hi | cat >/dev/null && ls / >/dev/null");
        assert_eq!(status, 0, "{stderr}");
    }

    #[test]
    fn namespace_creation_is_refused() {
        for script in [
            "unshare --user true",
            "unshare --mount true",
            "unshare --net true",
        ] {
            let (status, stderr) = under_filter(script);
            assert_ne!(status, 0, "{script} succeeded under the filter");
            assert!(
                stderr.contains("not permitted") || stderr.contains("Operation"),
                "{script}: {stderr}"
            );
        }
    }
}
