//! The Grafana dashboard (`deploy/grafana/volsync-dr.json`) is valid JSON whose every query
//! names metrics volsync-dr exports, so a renamed metric cannot leave a silently empty panel.

use std::collections::BTreeSet;

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/volsync-dr.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("valid JSON");
    assert_eq!(dashboard["uid"], "volsync-dr");
    // The families volsync-dr exports, as its /metrics declares them once each has a sample
    // (empty families are left out of the text).
    let metrics = volsync_dr::metrics::Metrics::new();
    metrics.admission("patched", 0.001);
    metrics.reconcile("ok", "");
    metrics.action_finished("migrate", "Succeeded", 3.0);
    metrics.app_down("migrate", 1.0);
    metrics.step_finished("migrate", "check-preconditions");
    metrics.policy_change("PolicyApplied");
    metrics.policy_sweep("ok", 0.1);
    metrics.set_leader(true);
    metrics.set_peer_reachable(true);
    metrics.pvc_status(
        "app",
        "db",
        volsync_dr::metrics::PvcStatus {
            role: "primary".into(),
            state: "Protected".into(),
            last_sync: Some(1.0),
            rpo_target: Some(1200.0),
        },
    );
    let exported: BTreeSet<String> = metrics
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("volsync_dr_"))
                .collect();
            assert!(!names.is_empty(), "{expr} queries no volsync-dr metric");
            for name in names {
                let family = ["_bucket", "_sum", "_count", "_total"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    exported.contains(family),
                    "{expr}: {name} is not exported (have {exported:?})"
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 15, "{queried}");
}
