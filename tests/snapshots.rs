//! Starting from a real subnet: `subnets[].from` (AWS CLI output or a
//! run's final state), adopting EKS nodes, and the shipped
//! scenarios/from-snapshot.yaml.

mod common;

use std::path::Path;

use common::{csv_rows, root, run, run_to, stderr};

#[test]
fn a_run_continued_from_its_own_final_state_keeps_every_address() {
    // The quickstart for 50 minutes (mid-failure: prefixes, secondary ENIs,
    // consumers), then a run that starts from its final-state.json and
    // final-subnets.json with nothing to change anything (a pool of size 0,
    // no workloads, no churn). Every ENI stays where it was: the second
    // run's final state is byte-identical to the first's, ids included.
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    run_to(
        &root().join("scenarios/quickstart.yaml"),
        &a,
        &["--duration", "50m"],
    );
    let b_yaml = d.path().join("b.yaml");
    std::fs::write(
        &b_yaml,
        "name: cont
duration: 1h
subnets:
  - name: private-a
    from: {subnet: a/final-subnets.json, network_interfaces: a/final-state.json}
node_pools:
  - {name: none, instance_type: m5.large, subnets: [private-a], size: 0}
",
    )
    .unwrap();
    let b = d.path().join("b");
    run_to(&b_yaml, &b, &[]);
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(
        read(&a.join("final-state.json")),
        read(&b.join("final-state.json"))
    );
    let avail = |p: &Path| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&read(p)).unwrap();
        v["Subnets"][0]["AvailableIpAddressCount"].clone()
    };
    assert_eq!(
        avail(&a.join("final-subnets.json")),
        avail(&b.join("final-subnets.json"))
    );
    // The first sample of the continuation is the last of the original.
    let last_a = csv_rows(&a.join("timeseries.csv")).pop().unwrap();
    let first_b = csv_rows(&b.join("timeseries.csv")).remove(0);
    for k in [
        "free_ips",
        "delegatable_blocks",
        "fragmented_blocks",
        "prefix_allocated_blocks",
    ] {
        assert_eq!(last_a[k], first_b[k], "{k}");
    }
}

#[test]
fn first_sample_agrees_with_inspect_on_every_block_class() {
    let o = run(&[
        "inspect",
        "--subnet",
        "scenarios/snapshots/subnets.json",
        "--enis",
        "scenarios/snapshots/enis.json",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = tempfile::tempdir().unwrap();
    run_to(&root().join("scenarios/from-snapshot.yaml"), d.path(), &[]);
    let first = csv_rows(&d.path().join("timeseries.csv")).remove(0);
    assert_eq!(first["time_s"], "0");
    for k in [
        "free_ips",
        "delegatable_blocks",
        "free_blocks",
        "fragmented_blocks",
        "full_blocks",
        "prefix_allocated_blocks",
        "fragmentation_score",
    ] {
        assert_eq!(v[k].to_string(), first[k], "{k}");
    }
}

#[test]
fn from_snapshot_claims() {
    // The scenario's comment: 334 free and 4 delegatable at the start, 17
    // nodes adopted with 216 pods (8 on a node with 2 prefixes: 16 x (2 -
    // 1) - 8; 19 on one with 3, capped by CPU: 1930m / 100m), the first
    // InsufficientCidrBlocks 2.5 s after the 6h rollout with 270 free.
    let d = tempfile::tempdir().unwrap();
    run_to(&root().join("scenarios/from-snapshot.yaml"), d.path(), &[]);
    let rows = csv_rows(&d.path().join("timeseries.csv"));
    assert_eq!(rows[0]["free_ips"], "334");
    assert_eq!(rows[0]["delegatable_blocks"], "4");
    assert_eq!(rows[0]["nodes_ready"], "17");
    assert_eq!(rows[0]["pods_running"], "216");
    let ev = csv_rows(&d.path().join("events.csv"));
    let adopted: Vec<_> = ev.iter().filter(|r| r["kind"] == "node_adopted").collect();
    assert_eq!(adopted.len(), 17);
    assert!(adopted
        .iter()
        .any(|r| r["detail"].ends_with("32 pod addresses held, 8 pods running")));
    assert!(adopted
        .iter()
        .any(|r| r["detail"].ends_with("48 pod addresses held, 19 pods running")));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["first_insufficient_cidr_blocks"]["time_s"], 21602.5);
    assert_eq!(s["min_delegatable_blocks"][0]["free_ips_then"], 270);
    assert_eq!(s["peak_pods_waiting_ip"]["pods"], 82);
    // 10 waiting after the rollout, 46 at the end.
    let at = |t: &str| rows.iter().find(|r| r["time_s"] == t).unwrap()["pods_waiting_ip"].clone();
    assert_eq!(at("21900"), "10");
    assert_eq!(rows.last().unwrap()["pods_waiting_ip"], "46");
}

/// A scenario over a snapshot written into a temporary folder.
fn with_snapshot(enis: &str, pool_extra: &str) -> (tempfile::TempDir, std::process::Output) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("enis.json"), enis).unwrap();
    let f = d.path().join("s.yaml");
    std::fs::write(
        &f,
        format!(
            "name: snap
duration: 10m
subnets:
  - name: a
    cidr: 10.0.0.0/24
    zone: z
    from: {{network_interfaces: enis.json}}
node_pools:
  - name: p
    instance_type: m5.large
    subnets: [a]
    size: 0
{pool_extra}"
        ),
    )
    .unwrap();
    let o = run(&[
        "run",
        f.to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
        "-q",
    ]);
    (d, o)
}

fn eni(id: &str, ips: &[&str], prefixes: &[&str], instance: Option<(&str, u32)>) -> String {
    let ips: Vec<String> = ips
        .iter()
        .enumerate()
        .map(|(k, a)| format!("{{\"PrivateIpAddress\": \"{a}\", \"Primary\": {}}}", k == 0))
        .collect();
    let prefixes: Vec<String> = prefixes
        .iter()
        .map(|p| format!("{{\"Ipv4Prefix\": \"{p}\"}}"))
        .collect();
    let att = instance.map_or(String::new(), |(i, d)| {
        format!(", \"Attachment\": {{\"InstanceId\": \"{i}\", \"DeviceIndex\": {d}}}")
    });
    let desc = match instance {
        Some((i, d)) if d > 0 => format!("aws-K8S-{i}"),
        _ => String::new(),
    };
    format!(
        "{{\"NetworkInterfaceId\": \"{id}\", \"InterfaceType\": \"interface\", \"Description\": \"{desc}\", \"PrivateIpAddresses\": [{}], \"Ipv4Prefixes\": [{}]{att}}}",
        ips.join(", "),
        prefixes.join(", ")
    )
}

fn file(enis: &[String]) -> String {
    format!("{{\"NetworkInterfaces\": [{}]}}", enis.join(", "))
}

#[test]
fn bad_snapshots_are_refused_with_file_json_path_and_reason() {
    let cases = [
        (
            file(&[eni("eni-1", &["10.0.1.5"], &[], None)]),
            "NetworkInterfaces[0] (eni-1): primary address",
            "outside",
        ),
        (
            file(&[
                eni("eni-1", &["10.0.0.5"], &[], None),
                eni("eni-2", &["10.0.0.9", "10.0.0.5"], &[], None),
            ]),
            "NetworkInterfaces[1] (eni-2): secondary address",
            "in use",
        ),
        (
            file(&[eni("eni-1", &["10.0.0.5"], &["10.0.0.36/28"], None)]),
            "NetworkInterfaces[0] (eni-1): prefix",
            "/28",
        ),
        (
            file(&[
                eni("eni-1", &["10.0.0.5"], &["10.0.0.32/28"], None),
                eni("eni-2", &["10.0.0.40"], &[], None),
            ]),
            "NetworkInterfaces[1] (eni-2): primary address",
            "in use",
        ),
    ];
    for (json, path, reason) in cases {
        let (_d, o) = with_snapshot(&json, "");
        assert_eq!(o.status.code(), Some(2), "{json}");
        let e = stderr(&o);
        assert!(e.contains("subnets[0].from.network_interfaces"), "{e}");
        assert!(e.contains("enis.json"), "{e}");
        assert!(e.contains(path), "{path}: {e}");
        assert!(e.to_lowercase().contains(reason), "{reason}: {e}");
    }
}

/// A snapshot that cannot be read refuses the subnet; a pool adopting
/// from it is then not checked against the wrong subnets (it panicked on
/// an index before): exit 2 naming the file, no panic.
#[test]
fn a_missing_snapshot_with_adoption_is_a_clean_error() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("scenarios/from-snapshot.yaml")).unwrap();
    let moved = d.path().join("from-snapshot.yaml");
    std::fs::write(&moved, text).unwrap();
    let o = run(&[
        "run",
        moved.to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
        "-q",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.contains("subnets[0].from"), "{e}");
    assert!(e.contains("snapshots/subnets.json"), "{e}");
    assert!(!d.path().join("o").exists(), "no outputs");
}

#[test]
fn adoption_takes_nodes_by_rule_and_keeps_the_rest_static() {
    // Two EKS nodes (a primary ENI each, one with a CNI ENI holding two
    // prefixes) and a load balancer.
    let enis = file(&[
        eni(
            "eni-a0",
            &["10.0.0.10"],
            &["10.0.0.32/28"],
            Some(("i-a", 0)),
        ),
        eni(
            "eni-a1",
            &["10.0.0.11"],
            &["10.0.0.48/28", "10.0.0.64/28"],
            Some(("i-a", 1)),
        ),
        eni(
            "eni-b0",
            &["10.0.0.12"],
            &["10.0.0.80/28"],
            Some(("i-b", 0)),
        ),
        eni("eni-lb", &["10.0.0.13"], &[], None),
    ]);
    // By id: only i-a, with both its ENIs: 48 addresses, pods estimated
    // 16 x (3 - 1) - 8 = 24 (WARM_PREFIX_TARGET=1; 50m pods, so the CPU
    // cap, 1930m / 50m = 38, does not bind); i-b stays a static ENI.
    let (d, o) = with_snapshot(&enis, "    adopt: {instances: [i-a], pod_cpu: 50m}\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = csv_rows(&d.path().join("o/events.csv"));
    let adopted: Vec<_> = ev.iter().filter(|r| r["kind"] == "node_adopted").collect();
    assert_eq!(adopted.len(), 1);
    assert!(
        adopted[0]["detail"]
            .starts_with("i-a in pool p: 2 ENIs, 48 pod addresses held, 24 pods running"),
        "{:?}",
        adopted[0]
    );
    let rows = csv_rows(&d.path().join("o/timeseries.csv"));
    assert_eq!(rows[0]["pods_running"], "24");
    assert_eq!(rows[0]["nodes"], "1");
    // Every instance (the default): both.
    let (d, o) = with_snapshot(&enis, "    adopt: {}\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = csv_rows(&d.path().join("o/events.csv"));
    assert_eq!(ev.iter().filter(|r| r["kind"] == "node_adopted").count(), 2);
    // By tag on any of the instance's ENIs: only i-a's CNI ENI carries it.
    let tagged = enis.replacen(
        "\"NetworkInterfaceId\": \"eni-a1\",",
        "\"NetworkInterfaceId\": \"eni-a1\", \"TagSet\": [{\"Key\": \"eks:nodegroup-name\", \"Value\": \"general\"}],",
        1,
    );
    assert_ne!(tagged, enis);
    let (d, o) = with_snapshot(&tagged, "    adopt: {tag: eks:nodegroup-name=general}\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = csv_rows(&d.path().join("o/events.csv"));
    let adopted: Vec<_> = ev.iter().filter(|r| r["kind"] == "node_adopted").collect();
    assert_eq!(adopted.len(), 1);
    assert!(adopted[0]["detail"].starts_with("i-a "));
    // By description prefix: only i-a has a CNI ENI (aws-K8S-...).
    let (d, o) = with_snapshot(&enis, "    adopt: {description_prefix: aws-K8S-}\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = csv_rows(&d.path().join("o/events.csv"));
    let adopted: Vec<_> = ev.iter().filter(|r| r["kind"] == "node_adopted").collect();
    assert_eq!(adopted.len(), 1);
    assert!(adopted[0]["detail"].starts_with("i-a "));
    // An unknown instance, and a malformed tag rule, are refused.
    let (_d, o) = with_snapshot(&enis, "    adopt: {instances: [i-zz]}\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("node_pools[0].adopt.instances[0]: no instance i-zz"),
        "{}",
        stderr(&o)
    );
    let (_d, o) = with_snapshot(&enis, "    adopt: {tag: nodegroup}\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("node_pools[0].adopt.tag: write key=value"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_shipped_snapshot_is_what_its_history_makes() {
    // scenarios/snapshots/history.yaml's comment says the snapshot files
    // are its final state: rerunning it gives them byte for byte.
    let d = tempfile::tempdir().unwrap();
    run_to(
        &root().join("scenarios/snapshots/history.yaml"),
        d.path(),
        &[],
    );
    for (made, shipped) in [
        ("final-state.json", "enis.json"),
        ("final-subnets.json", "subnets.json"),
    ] {
        assert_eq!(
            std::fs::read(d.path().join(made)).unwrap(),
            std::fs::read(root().join("scenarios/snapshots").join(shipped)).unwrap(),
            "{shipped}"
        );
    }
}

#[test]
fn snapshot_enis_churn_when_asked() {
    // Two load balancer ENIs in the snapshot, `from.churn` replacing elb
    // ENIs every 10 minutes on average: over 6 hours each is replaced
    // about 36 times (Poisson: surely more than 10 in all), the count
    // stays 2, and the original addresses are released.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("enis.json"),
        file(&[
            eni("eni-lb1", &["10.0.0.20"], &[], None).replace(
                "\"InterfaceType\": \"interface\"",
                "\"InterfaceType\": \"network_load_balancer\"",
            ),
            eni("eni-lb2", &["10.0.0.21"], &[], None).replace(
                "\"InterfaceType\": \"interface\"",
                "\"InterfaceType\": \"network_load_balancer\"",
            ),
        ]),
    )
    .unwrap();
    let f = d.path().join("s.yaml");
    std::fs::write(
        &f,
        "name: churn
duration: 6h
subnets:
  - name: a
    cidr: 10.0.0.0/24
    zone: z
    from: {network_interfaces: enis.json, churn: [{kind: nlb, every: 10m}]}
node_pools:
  - {name: p, instance_type: m5.large, subnets: [a], size: 0}
",
    )
    .unwrap();
    let out = d.path().join("o");
    run_to(&f, &out, &[]);
    let ev = csv_rows(&out.join("events.csv"));
    let deleted = ev
        .iter()
        .filter(|r| r["kind"] == "consumer_deleted")
        .count();
    assert!(deleted > 10, "{deleted}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("final-state.json")).unwrap()).unwrap();
    let enis = state["NetworkInterfaces"].as_array().unwrap();
    assert_eq!(enis.len(), 2);
    assert!(ev
        .iter()
        .any(|r| r["kind"] == "consumer_deleted" && r["detail"].ends_with("at 10.0.0.20")));
}
