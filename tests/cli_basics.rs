//! Integration tests: run the real binary on the shipped examples and on bad
//! input.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_subnetsim"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .current_dir(root())
        .output()
        .expect("binary runs")
}

#[test]
fn max_pods_prints_one_integer() {
    for (args, want) in [
        (vec!["max-pods", "m5.large", "--secondary-ip"], "29"),
        (vec!["max-pods", "m5.large"], "110"),
        (vec!["max-pods", "m5.large", "--prefix-delegation"], "110"),
        (vec!["max-pods", "t3.medium", "--prefix-delegation"], "110"),
        (vec!["max-pods", "m5.xlarge", "--secondary-ip"], "58"),
        (
            vec!["max-pods", "c5.18xlarge", "--prefix-delegation"],
            "250",
        ),
        (
            vec![
                "max-pods",
                "m5.4xlarge",
                "--show-max-allowed",
                "--secondary-ip",
            ],
            "234",
        ),
        (
            vec![
                "max-pods",
                "m5.large",
                "--custom-networking",
                "--secondary-ip",
            ],
            "20",
        ),
        (
            vec!["max-pods", "m5.large", "--max-eni", "1", "--secondary-ip"],
            "11",
        ),
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), want, "{args:?}");
    }
}

#[test]
fn max_pods_xen_with_pd_falls_back_with_a_note() {
    let o = run(&["max-pods", "t2.medium", "--prefix-delegation"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "17");
    assert!(stderr(&o).contains("secondary-IP"), "{}", stderr(&o));
}

#[test]
fn max_pods_json() {
    let o = run(&["max-pods", "m5.large", "--prefix-delegation", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["max_pods"], 110);
    assert_eq!(v["max_allowed"], 434);
    assert_eq!(v["mode"], "prefix_delegation");
}

#[test]
fn max_pods_unknown_type_exits_2_with_nearest_names() {
    let o = run(&["max-pods", "m5.larg"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("m5.large"), "{}", stderr(&o));
}

#[test]
fn max_pods_unknown_vcpu_needs_flag() {
    // Find a catalogue row without vCPU data.
    let cat = subnetsim::catalog::Catalog::embedded();
    let t = cat
        .iter()
        .find(|t| t.vcpu.is_none())
        .expect("28 rows lack vCPU");
    let o = run(&["max-pods", &t.name]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--vcpus"), "{}", stderr(&o));
    let o = run(&["max-pods", &t.name, "--vcpus", "64"]);
    assert!(o.status.success());
}

#[test]
fn instance_types_lists_a_family() {
    let o = run(&["instance-types", "--family", "m5"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("m5.large"));
    assert!(!out.contains("c5.large"));
    let o = run(&["instance-types", "--family", "m5", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["instance_type"].as_str().unwrap().starts_with("m5.")));
    let o = run(&["instance-types", "--family", "m55"]);
    assert_eq!(o.status.code(), Some(2));
}

const EX: &str = "docs/examples/inspect";

#[test]
fn inspect_the_shipped_example() {
    let o = run(&[
        "inspect",
        "--subnet",
        &format!("{EX}/subnets.json"),
        "--enis",
        &format!("{EX}/enis.json"),
        "--reservations",
        &format!("{EX}/reservations.json"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Worked by hand from the example (see docs/commands.md).
    assert_eq!(v["used_ips"], 8);
    assert_eq!(v["free_ips"], 163);
    assert_eq!(v["free_blocks"], 3);
    assert_eq!(v["fragmented_blocks"], 6);
    assert_eq!(v["prefix_allocated_blocks"], 5);
    assert_eq!(v["delegatable_blocks"], 3);
    assert_eq!(v["fragmentation_score"], 67);
    assert_eq!(v["severity"], "MEDIUM");
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 16);
    assert_eq!(blocks[12]["cidr"], "10.0.8.192/28");
    assert_eq!(blocks[12]["status"], "free");
    assert_eq!(blocks[12]["in_reservation"], true);
    assert_eq!(blocks[2]["status"], "fragmented");
    assert_eq!(blocks[2]["used"], 2); // .37 (node) and .44 (ELB)
    assert_eq!(blocks[2]["free"], 14);

    let o = run(&[
        "inspect",
        "--cidr",
        "10.0.8.0/24",
        "--enis",
        &format!("{EX}/enis.json"),
        "--reservations",
        &format!("{EX}/reservations.json"),
    ]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("R A ▣ □ A A A ▣ □ ▣ ▣ ▣ P A ▣ R"), "{text}");
    assert!(text.contains("67% (MEDIUM)"));
}

fn write_tmp(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn inspect_bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("{ not json", "enis.json:1:"),
        (
            r#"{"NetworkInterfaces":[{"NetworkInterfaceId":"eni-1","PrivateIpAddresses":[{"PrivateIpAddress":"10.9.0.7","Primary":true}]}]}"#,
            "outside the subnet",
        ),
        (
            r#"{"NetworkInterfaces":[
              {"NetworkInterfaceId":"eni-1","PrivateIpAddresses":[{"PrivateIpAddress":"10.0.8.7","Primary":true}],"Ipv4Prefixes":[{"Ipv4Prefix":"10.0.8.64/28"}]},
              {"NetworkInterfaceId":"eni-2","PrivateIpAddresses":[{"PrivateIpAddress":"10.0.8.8","Primary":true}],"Ipv4Prefixes":[{"Ipv4Prefix":"10.0.8.64/28"}]}]}"#,
            "eni-2",
        ),
        (
            r#"{"NetworkInterfaces":[{"NetworkInterfaceId":"eni-1","PrivateIpAddresses":[{"PrivateIpAddress":"10.0.8.1","Primary":true}]}]}"#,
            "AWS-reserved",
        ),
        (
            r#"{"NetworkInterfaces":[{"NetworkInterfaceId":"eni-1","PrivateIpAddresses":[{"PrivateIpAddress":"10.0.8.7","Primary":true}],"Ipv4Prefixes":[{"Ipv4Prefix":"10.0.8.72/29"}]}]}"#,
            "not an aligned /28",
        ),
    ];
    for (text, want) in cases {
        let f = write_tmp(dir.path(), "enis.json", text);
        let o = run(&["inspect", "--cidr", "10.0.8.0/24", "--enis", &f]);
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(
            stderr(&o).contains(want),
            "want `{want}` in: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("enis.json"),
            "names the file: {}",
            stderr(&o)
        );
    }
    let enis = write_tmp(dir.path(), "ok.json", r#"{"NetworkInterfaces":[]}"#);
    let res = write_tmp(
        dir.path(),
        "res.json",
        r#"{"SubnetIpv4CidrReservations":[{"Cidr":"10.0.8.0/25","ReservationType":"prefix"},{"Cidr":"10.0.8.64/26","ReservationType":"explicit"}]}"#,
    );
    let o = run(&[
        "inspect",
        "--cidr",
        "10.0.8.0/24",
        "--enis",
        &enis,
        "--reservations",
        &res,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("overlap"), "{}", stderr(&o));
}

#[test]
fn node_json_has_the_documented_fields() {
    let o = run(&[
        "node",
        "m5.large",
        "--pods",
        "37",
        "--minimum-ip-target",
        "25",
        "--warm-ip-target",
        "5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in [
        "enis",
        "prefixes",
        "prefixes_per_eni",
        "secondary_ips",
        "subnet_addresses",
        "unused_ips",
    ] {
        assert!(v.get(f).is_some(), "missing {f}");
    }
    assert_eq!(v["prefixes"], 3);
    assert_eq!(v["subnet_addresses"], 49);
    let o = run(&["node", "m5.large", "--pods", "1", "--secondary-ip"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("secondary IPs:      18"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn node_bad_input_exits_2() {
    let o = run(&["node", "m5.large", "--pods", "200"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("max pods 110"), "{}", stderr(&o));
    let o = run(&["node", "m9.large", "--pods", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nearest"), "{}", stderr(&o));
    let o = run(&[
        "node",
        "m5.large",
        "--pods",
        "2",
        "--secondary-ip",
        "--prefix-delegation",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
