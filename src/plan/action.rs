//! Objects the actions create, pure.

use crate::model::volsync::{ReplicationSource, ReplicationSourceTriggerSpec};

/// The one-time ReplicationSource: the scheduled one's spec with a manual trigger instead of the
/// schedule (VolSync syncs once per new trigger value).
pub fn one_time_source(scheduled: &ReplicationSource, name: &str, trigger: &str) -> ReplicationSource {
    let mut rs = ReplicationSource {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: scheduled.metadata.namespace.clone(),
            labels: scheduled.metadata.labels.clone(),
            annotations: scheduled.metadata.annotations.clone(),
            ..Default::default()
        },
        spec: scheduled.spec.clone(),
        status: None,
    };
    rs.spec.trigger = Some(ReplicationSourceTriggerSpec {
        schedule: None,
        manual: Some(trigger.to_string()),
    });
    rs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::volsync::ReplicationSourceSpec;

    #[test]
    fn same_endpoint_manual_trigger() {
        let mut scheduled = ReplicationSource::new(
            "rs-p",
            ReplicationSourceSpec {
                source_pvc: Some("p".into()),
                trigger: Some(ReplicationSourceTriggerSpec {
                    schedule: Some("@hourly".into()),
                    manual: None,
                }),
                ..Default::default()
            },
        );
        scheduled.metadata.namespace = Some("n".into());
        scheduled.metadata.resource_version = Some("7".into());
        let once = one_time_source(&scheduled, "rs-p-latest", "sync-now:1");
        assert_eq!(once.metadata.name.as_deref(), Some("rs-p-latest"));
        assert_eq!(once.metadata.resource_version, None);
        assert_eq!(once.spec.source_pvc.as_deref(), Some("p"));
        assert_eq!(
            once.spec.trigger,
            Some(ReplicationSourceTriggerSpec {
                schedule: None,
                manual: Some("sync-now:1".into())
            })
        );
    }
}
