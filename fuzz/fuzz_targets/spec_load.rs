//! The `.forkr/*.yaml` loader and validator on arbitrary text: YAML parsing with spans, schema
//! checks, semantic checks, diagnostics rendering and, when a file loads, planning it against an
//! empty server. It must never panic, hang or blow up memory, whatever the file holds; every
//! problem must come back as a diagnostic that renders.
#![no_main]

use std::path::Path;

use forkr_engine::plan::{Observed, PlanOptions, RenderOptions, plan};
use forkr_engine::spec::{LoadOptions, load_config, load_sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A second file in the same workspace: split the input at a form feed, so cross-file checks
    // (duplicates, references between files) are reached too.
    let (first, second) = text.split_once('\u{c}').unwrap_or((text, ""));
    let sources = [(".forkr/forkr.yaml", first), (".forkr/more.yaml", second)];
    let opts = LoadOptions { default_project: "default".into(), ..Default::default() };
    // A root that does not exist: paths the files name (tarballs, build scripts, sync folders)
    // resolve to nothing, so the fuzzer never reads host files.
    let root = Path::new("/nonexistent/forkr-fuzz-workspace");
    match load_sources(root, &sources, &opts) {
        Ok(ws) => {
            let observed = Observed { project: ws.project.clone(), ..Default::default() };
            let p = plan(&ws, &observed, &PlanOptions::default());
            let _ = p.render(&RenderOptions::default());
            let _ = p.to_json();
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed load reported no problem");
            let _ = errors.render(false);
            let _ = errors.to_lines();
            let _ = errors.to_json();
        }
    }
    if let Err(errors) = load_config(".forkr/config.yaml", first) {
        assert!(!errors.is_empty(), "a failed config load reported no problem");
        let _ = errors.render(false);
    }
});
