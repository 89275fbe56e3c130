//! Reading `/proc/<pid>/stat` and `/proc/<pid>/status` of host processes.
//!
//! A box is identified across server restarts by the host PID of its PID 1 *and* that process's
//! start time, because PIDs are reused: a PID alone could name an unrelated process later.

/// The fields of `/proc/<pid>/stat` the runtime needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Process state letter (`R`, `S`, `Z`...).
    pub state: char,
    /// Parent PID (in the reader's PID namespace).
    pub ppid: i32,
    /// Start time in clock ticks after boot (field 22).
    pub start_time: u64,
}

impl Stat {
    /// Whether the process has exited (a zombie or being reaped).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the content of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted after the *last* `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3 (state): field N is fields[N - 3].
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(Stat { state, ppid, start_time })
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist (or is unreadable).
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The PID of a host process inside the nested PID namespace it lives in (last `NSpid` entry);
/// `None` for a process of the reader's own namespace, or one that is gone.
pub(crate) fn nested_pid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_nspid(&text)
}

/// Whether `pid` has a child process (`/proc/<pid>/task/<pid>/children`: children of its main
/// thread, which is all of them for a single-threaded init).
pub(crate) fn has_children(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).is_ok_and(|s| !s.trim().is_empty())
}

pub(crate) fn parse_nspid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let pids: Vec<&str> = line.split_ascii_whitespace().collect();
    if pids.len() < 2 {
        return None;
    }
    pids.last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let text = "4242 (we (ird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(s, Stat { state: 'S', ppid: 17, start_time: 987654 });
        assert!(!s.is_dead());
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 0").is_none());
    }

    #[test]
    fn reads_own_stat() {
        let me = std::process::id();
        let s = stat(me).unwrap();
        assert!(!s.is_dead());
        assert_eq!(s.ppid as u32, std::os::unix::process::parent_id());
        assert!(s.start_time > 0);
        // Stable: the start time of a process never changes.
        assert_eq!(stat(me).unwrap().start_time, s.start_time);
        assert_eq!(nested_pid(me), None, "the test runs in the host PID namespace");
    }

    #[test]
    fn sees_children() {
        use std::os::unix::process::CommandExt;

        assert!(!has_children(u32::MAX), "no such process");
        // A shell (single-threaded, like an init) with one child, in a process group of its own
        // so that the child goes too.
        let mut sh =
            std::process::Command::new("sh").args(["-c", "sleep 5 & wait"]).process_group(0).spawn().unwrap();
        let pid = sh.id();
        let listed = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            has_children(pid)
        });
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
            .unwrap();
        sh.wait().unwrap();
        assert!(listed, "the shell's child was never listed");
    }

    #[test]
    fn parses_nspid() {
        assert_eq!(parse_nspid("Name:\tsh\nNSpid:\t5123\t7\nNSpgid: 1\n"), Some(7));
        assert_eq!(parse_nspid("Name:\tsh\nNSpid:\t5123\n"), None);
        assert_eq!(parse_nspid("Name:\tsh\n"), None);
    }
}
