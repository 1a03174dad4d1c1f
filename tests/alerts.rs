//! The shipped alerts, run by Prometheus's own `promtool test rules` (built from the Go module
//! proxy by `tests/tools/build-promtool.sh`, cached per machine): every alert fires in one case
//! and stays quiet in another, over series shaped like volsync-dr's `/metrics`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    if let Ok(path) = std::env::var("VOLSYNC_DR_PROMTOOL") {
        return PathBuf::from(path);
    }
    let out = Command::new("bash")
        .arg(root().join("tests/tools/build-promtool.sh"))
        .output()
        .expect("run tests/tools/build-promtool.sh");
    assert!(
        out.status.success(),
        "building promtool failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the script prints promtool's path").trim())
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_shipped_alert_fires_when_it_should_and_only_then() {
    let rule = yaml(&root().join("deploy/components/monitoring/prometheusrule.yaml"));
    let dir = tempfile::tempdir().expect("tempdir");
    // promtool reads Prometheus rule files: the PrometheusRule's spec is one.
    let rules = serde_saphyr::to_string(&rule["spec"]).expect("rules");
    std::fs::write(dir.path().join("rules.yaml"), rules).expect("write rules");
    let tests = root().join("tests/alerts/volsync-dr.test.yaml");
    std::fs::copy(&tests, dir.path().join("volsync-dr.test.yaml")).expect("copy tests");

    // Every alert has a case where it fires and one where it does not, and every alert a
    // person can get says what happened, where, and where to read what to do.
    let alerts: BTreeSet<String> = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            let name = r["alert"].as_str().expect("alert name").to_string();
            for key in ["summary", "description", "runbook_url"] {
                assert!(r["annotations"][key].is_string(), "{name} has no {key}");
            }
            let anchor = name.to_lowercase();
            assert!(
                r["annotations"]["runbook_url"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with(&format!("README.md#{anchor}")),
                "{name}'s runbook_url points at its README section"
            );
            name
        })
        .collect();
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let cases = yaml(&tests);
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for group in cases["tests"].as_array().expect("tests") {
        for case in group["alert_rule_test"].as_array().cloned().unwrap_or_default() {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            match case["exp_alerts"].as_array().map(Vec::len) {
                Some(0) | None => quiet.insert(name),
                Some(_) => firing.insert(name),
            };
        }
    }
    for alert in &alerts {
        assert!(firing.contains(alert), "no test where {alert} fires");
        assert!(quiet.contains(alert), "no test where {alert} stays quiet");
        assert!(
            readme.contains(&format!("### {alert}\n")),
            "README has no section {alert}"
        );
    }

    let out = Command::new(promtool())
        .args(["test", "rules", "volsync-dr.test.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{said}");
    assert!(out.status.success(), "promtool test rules failed:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}
