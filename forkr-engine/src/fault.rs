//! Fault injection for the crash tests: named points between the steps of multi-step operations
//! where a test build of the server kills itself, so a test can check that the next start
//! converges (the reconcile pass) whichever step a crash interrupted.
//!
//! Compiled in only with the `fault-injection` feature (the `forkr-server-faults` test binary);
//! in every other build [`point`] is an empty inline function. With the feature, `FORKR_FAULT=<point>`
//! makes the process SIGKILL itself when it reaches that point: no destructor, no flush, no
//! reply, exactly what a power cut or an OOM kill does to the server.

/// Every point, in the order an operation passes them. Tests iterate over this list, so a point
/// added in the code and not here (or the reverse) fails `points_are_listed_once`.
pub const POINTS: &[&str] = &[
    // create / fork (box_create.rs)
    "create.after_row",
    "create.after_root",
    "create.after_start",
    // restore (snapshots.rs)
    "restore.after_stop",
    "restore.after_fresh_root",
    "restore.after_exchange",
    // snapshot create (snapshots.rs)
    "snapshot.after_row",
    // base import, save and build share the registration (bases.rs)
    "import.after_extract",
    "base.after_move",
    "base.after_read_only",
    "base.after_row",
    "build.after_box",
    "build.after_script",
    // delete (box_delete.rs)
    "delete.after_stop",
    "delete.after_files",
];

/// Kills the process here when `FORKR_FAULT` names this point (feature `fault-injection` only).
#[inline]
pub fn point(name: &'static str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("FORKR_FAULT").is_ok_and(|v| v == name) {
        eprintln!("forkr fault injection: killing the server at {name}");
        // SAFETY: signalling our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    /// Every point in [`super::POINTS`] appears exactly once in the engine's sources and no call
    /// names a point missing from the list.
    #[test]
    fn points_are_listed_once() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
        let mut calls = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for (i, _) in text.match_indices("fault::point(\"") {
                let rest = &text[i + "fault::point(\"".len()..];
                calls.push(rest[..rest.find('"').unwrap()].to_owned());
            }
        }
        calls.sort();
        let mut listed: Vec<String> = super::POINTS.iter().map(|p| p.to_string()).collect();
        listed.sort();
        assert_eq!(calls, listed);
    }
}
