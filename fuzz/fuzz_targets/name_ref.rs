//! Name validation and ref parsing (`project:box`, `project.box`, `-`, `.`, `box:/path`), the
//! first thing every CLI argument and every API path goes through. Beyond "never panics", it
//! checks the properties the rest of the system relies on: an accepted name is plain ASCII of
//! the documented characters and length, so it is safe as a path component, a cgroup name and a
//! hostname label; a parsed ref holds only accepted names; project sanitising always yields an
//! accepted project name and is idempotent.
#![no_main]

use forkr_engine::name::{BoxPath, BoxRef, NameKind, sanitize_project, validate, validate_mount_path};
use libfuzzer_sys::fuzz_target;

const KINDS: [NameKind; 6] =
    [NameKind::Box, NameKind::Project, NameKind::Snapshot, NameKind::Base, NameKind::Volume, NameKind::User];

fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.len() <= 128 && !s.contains('/') && !s.contains('\0')
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for kind in KINDS {
        if validate(kind, s).is_ok() {
            assert!(s.is_ascii(), "{kind:?} accepted non-ASCII {s:?}");
            assert!(safe_component(s), "{kind:?} accepted {s:?}, unsafe as a path component");
            if matches!(kind, NameKind::Box | NameKind::Project | NameKind::Volume) {
                assert!(s.len() <= 63 && !s.starts_with('-') && !s.ends_with('-'), "{kind:?} {s:?}");
                assert!(
                    s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{s:?}"
                );
            }
        }
    }
    match BoxRef::parse(s) {
        Ok(BoxRef::Named { project, name }) => {
            assert!(validate(NameKind::Box, &name).is_ok(), "{s:?} -> box {name:?}");
            if let Some(p) = &project {
                assert!(validate(NameKind::Project, p).is_ok(), "{s:?} -> project {p:?}");
                // The canonical form parses back to the same ref.
                let again = BoxRef::parse(&format!("{p}:{name}"));
                assert_eq!(again.ok(), Some(BoxRef::Named { project: project.clone(), name: name.clone() }));
            }
        }
        Ok(BoxRef::Ephemeral { project: Some(p) }) => assert!(validate(NameKind::Project, &p).is_ok()),
        Ok(_) | Err(_) => {}
    }
    if let Ok(Some(bp)) = BoxPath::parse(s) {
        assert!(bp.path.starts_with('/'), "{s:?} -> path {:?}", bp.path);
    }
    if let Some(p) = sanitize_project(s) {
        assert!(
            validate(NameKind::Project, &p).is_ok(),
            "sanitize_project({s:?}) = {p:?} is not a project name"
        );
        assert_eq!(sanitize_project(&p).as_deref(), Some(p.as_str()), "sanitize_project is not idempotent");
    }
    if validate_mount_path(s).is_ok() {
        assert!(s.starts_with('/'), "mount path {s:?} accepted");
        assert!(!s.split('/').any(|c| c == ".."), "mount path {s:?} climbs out");
        for root in ["/proc", "/sys", "/dev", "/run", "/etc"] {
            assert!(s != root && !s.starts_with(&format!("{root}/")), "mount path {s:?} under {root}");
        }
    }
});
