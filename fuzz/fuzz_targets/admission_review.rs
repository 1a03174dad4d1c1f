//! Arbitrary bytes into the admission handler: it must never panic, a body that is not a review
//! must be an error (400), and any patch it returns must apply to the request's object.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use volsync_dr::admission::AdmissionState;
use volsync_dr::admission::decide::AdmissionDefaults;
use volsync_dr::admission::review::review;
use volsync_dr::metrics::Metrics;
use volsync_dr::model::volsync::ServiceType;

fn state() -> &'static AdmissionState {
    static STATE: OnceLock<AdmissionState> = OnceLock::new();
    STATE.get_or_init(|| AdmissionState {
        defaults: AdmissionDefaults { service_type: ServiceType::ClusterIP },
        metrics: Arc::new(Metrics::new()),
        policies: None,
        groups: None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok((response, _)) = review(state(), data) else { return };
    if let Some(patch) = &response.patch {
        let ops: json_patch::Patch = serde_json::from_slice(patch).expect("the webhook's patch is JSON patch");
        // The object as the handler read it (unknown fields, even with bytes that are not
        // UTF-8, are skipped by the typed parse; the body need not be a valid `Value`).
        let review: kube::core::admission::AdmissionReview<kube::core::DynamicObject> =
            serde_json::from_slice(data).expect("a reviewed body parses as a review");
        let request = review.request.expect("a reviewed body has a request");
        let mut object = serde_json::to_value(request.object.expect("a patched review has an object")).expect("json");
        json_patch::patch(&mut object, &ops).expect("the patch applies to the request's object");
    }
});
