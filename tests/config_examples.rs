//! The example configs in config/ parse and mean what they say.

use std::path::Path;

#[test]
fn example_job_config_is_the_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = bloomlink::hub::JobConfig::load(&root.join("config/job.toml")).unwrap();
    let d = bloomlink::hub::JobConfig::default();
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::to_value(&d).unwrap()
    );
}

#[test]
fn demo_schemas_share_one_fingerprint_and_febrl4_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fps: Vec<String> = ["social_care", "school", "health", "police", "housing"]
        .iter()
        .map(|n| {
            bloomlink::agency::Schema::load(&root.join(format!("config/demo/{n}.toml")))
                .unwrap()
                .fingerprint()
        })
        .collect();
    assert!(fps.iter().all(|f| f == &fps[0]));
    let s = bloomlink::agency::Schema::load(&root.join("config/febrl4.toml")).unwrap();
    assert_eq!(s.fields.len(), 10);
    assert_eq!(s.blocking.len(), 4);
}

#[test]
fn large_job_config_bands_only_the_records_left_single() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = bloomlink::hub::JobConfig::load(&root.join("config/job-large.toml")).unwrap();
    // Keys for every record; LSH bands only in the second look (§64).
    assert_eq!(
        c.blocking.method,
        bloomlink::hub::config::BlockingMethod::Keys
    );
    assert!(c.resolve.second_look && c.resolve.second_look_lsh && c.resolve.second_look_selection);
    assert!(c.blocking.lsh_bands > 0 && c.blocking.lsh_bits > 0);
    // Postcode and address go wrong together (§66).
    assert_eq!(
        c.scoring.dependent,
        [["postcode".to_string(), "address".to_string()]]
    );
}
