//! The source tree's layering: `scripts/code_map.py` reads every import
//! between the files of `src/` and fails on an import that runs upward
//! (from a layer to a higher one, e.g. `config` to `model`) or on a circle
//! of imports between files.

use std::process::Command;

#[test]
fn imports_run_downward_and_form_no_circle() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/scripts/code_map.py"))
        .output()
        .expect("python3 runs scripts/code_map.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the code map found upward imports or circles:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 upward; 0 circles"), "{text}");
    // the map really read the tree: the stages import what they build on
    assert!(text.contains("[stage2] stage2 → "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("[stage2] stage2 → ") && l.contains("stage1")),
        "{text}"
    );
}

/// Copies `src/` and `scripts/` into a temporary folder, puts `line` at the
/// top of `file` there (above any unit tests, which the map leaves out), and
/// runs the code map on the copy.
fn code_map_with(file: &str, line: &str) -> (bool, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["src", "scripts"] {
        let status = Command::new("cp")
            .arg("-r")
            .arg(root.join(dir))
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let path = tmp.path().join("src").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{line}{text}")).unwrap();
    let out = Command::new("python3")
        .arg(tmp.path().join("scripts/code_map.py"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

#[test]
fn an_upward_import_or_a_circle_fails_the_map() {
    let (ok, text) = code_map_with("config/schema.rs", "use crate::model::ParamSet;\n");
    assert!(!ok && text.contains("UPWARD config → model"), "{text}");
    let (ok, text) = code_map_with("stage1/sgd.rs", "use crate::stage2::unroll::StepBatch;\n");
    assert!(!ok && text.contains("UPWARD stage1 → stage2"), "{text}");
    // two files of one module that import each other
    let (ok, text) = code_map_with("model/ops.rs", "use crate::model::retrieval::Recall;\n");
    assert!(!ok && text.contains("CIRCLE"), "{text}");
}
