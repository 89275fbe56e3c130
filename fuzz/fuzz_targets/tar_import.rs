//! The base importer's tarball extraction (`POST /v1/bases/{name}/import`, `4kr base import`) on
//! arbitrary bytes: gzip and tar parsing, and every entry kind (files, directories, symlinks,
//! hard links, devices, absolute names, `..`, links that point out). Beyond "never panics", it
//! checks the boundary: the extraction writes nothing outside its destination. The destination
//! sits in a fresh directory beside a sentinel directory and file; after each run the parent
//! must hold exactly those, the sentinel unchanged, and no file named like an entry may appear
//! in the parent.
//!
//! Input format: a first byte, then the body. An even first byte means the body is a plain tar
//! that the target gzips before the import (so mutations hit the tar structure, not the
//! compressed stream); an odd one means the body is uploaded as it is (gzip handling, garbage).
#![no_main]

use std::io::Write;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

const SENTINEL: &[u8] = b"must stay as it is\n";

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn upload(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, body) = data.split_first()?;
    if mode % 2 == 1 {
        return Some(body.to_vec());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body).ok()?;
    gz.finish().ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(data) = upload(data) else { return };
    let Ok(tmp) = tempfile::Builder::new().prefix("forkr-fuzz-tar-").tempdir() else { return };
    let base = tmp.path();
    let (tarball, dst, outside) = (base.join("upload.tar.gz"), base.join("root"), base.join("outside"));
    if std::fs::write(&tarball, data).is_err()
        || std::fs::create_dir(&dst).is_err()
        || std::fs::create_dir(&outside).is_err()
        || std::fs::write(outside.join("sentinel"), SENTINEL).is_err()
    {
        return;
    }
    let result = forkr_engine::fuzzing::extract_tarball(&tarball, &dst);
    if let Err(e) = &result {
        assert!(!e.message().is_empty(), "an import error without a message");
        assert!(
            !e.message().contains(base.to_string_lossy().as_ref()),
            "an import error names a server path: {}",
            e.message()
        );
    }
    assert_eq!(listing(base), ["outside", "root", "upload.tar.gz"], "the extraction wrote beside its root");
    assert_eq!(listing(&outside), ["sentinel"], "the extraction wrote into a sibling directory");
    assert_eq!(
        std::fs::read(outside.join("sentinel")).ok().as_deref(),
        Some(SENTINEL),
        "the sentinel changed"
    );
    // The fuzzer runs as root, so read-only directories an entry made do not stop the cleanup.
});
