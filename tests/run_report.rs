//! `aullm run --truth --report` as `make demo` runs it: the HTML report exists, carries the
//! annotation beside the events, and the events it embeds are exactly the jsonl sink's.

mod clients;

use std::path::Path;
use std::process::Command;

#[test]
fn the_run_report_embeds_exactly_the_jsonl_events_and_the_truth() {
    let root = tempfile::tempdir().unwrap();
    let video = clients::long_video(root.path(), 9);
    let out = root.path().join("out");
    let (jsonl, report) = (out.join("events.jsonl"), out.join("report.html"));
    std::fs::create_dir_all(&out).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_aullm"))
        .arg("run")
        .arg(&video)
        .arg("--model")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default"))
        .arg("--sink")
        .arg(format!("jsonl:{}", jsonl.display()))
        .arg("--truth")
        .arg(root.path())
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.starts_with(&format!("report: {}", report.display())),
        "the report's path comes first: {stdout}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty(), "the video holds 4 expressions");
    let tag = "<script type=\"application/json\" id=\"aullm-events\">";
    let start = html.find(tag).expect("embedded events") + tag.len();
    let end = start + html[start..].find("</script>").unwrap();
    let embedded: Vec<serde_json::Value> = serde_json::from_str(&html[start..end]).unwrap();
    assert_eq!(embedded, lines, "report events = jsonl events");
    // One table row per event, and the annotation drawn and compared.
    assert_eq!(html.matches("<tr><td>").count(), lines.len());
    assert_eq!(
        html.matches("class=\"truth\"").count(),
        4,
        "4 annotated intervals"
    );
    assert!(html.contains("Against the ground truth") && html.contains("spotting (MEGC"));
}
