//! Variants and `--set`: partial YAML merged over a scenario before it is
//! validated. Maps merge key by key; a list whose override elements are all
//! maps with a `name` is merged element by element, matched by name (an
//! unmatched element is added); any other list, and every scalar, replaces.

use serde_yaml::{Mapping, Value};

fn name_of(v: &Value) -> Option<&str> {
    v.as_mapping()?.get("name")?.as_str()
}

/// Merges `over` into `base` by the rules above.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o))
            if !o.is_empty() && o.iter().all(|x| name_of(x).is_some()) =>
        {
            for x in o {
                let n = name_of(x).expect("checked");
                match b.iter_mut().find(|y| name_of(y) == Some(n)) {
                    Some(y) => merge(y, x),
                    None => b.push(x.clone()),
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// One `--set PATH=VALUE`.
#[derive(Clone, Debug, PartialEq)]
pub struct SetOverride {
    /// As written, for messages.
    pub text: String,
    pub path: Vec<String>,
    pub value: Value,
}

/// Parses `PATH=VALUE`: dot-separated keys, list elements named by their
/// `name` (or their index); the value is YAML (`10.0.0.0/22`, `5`, `true`,
/// `[a, b]`, `{cidr: 10.0.0.0/25, type: prefix}`).
pub fn parse_set(s: &str) -> Result<SetOverride, String> {
    let (path, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected PATH=VALUE (e.g. vpc_cni.warm_ip_target=5)"))?;
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("`{s}`: the path `{path}` has an empty part"));
    }
    let value: Value =
        serde_yaml::from_str(value).map_err(|e| format!("`{s}`: the value is not YAML: {e}"))?;
    Ok(SetOverride {
        text: s.to_string(),
        path: path.split('.').map(String::from).collect(),
        value,
    })
}

/// Applies one `--set` to a scenario value.
pub fn apply_set(root: &mut Value, set: &SetOverride) -> Result<(), String> {
    let mut cur = root;
    let mut i = 0;
    let segs = &set.path;
    while i < segs.len() {
        let last = i + 1 == segs.len();
        match cur {
            Value::Mapping(m) => {
                let key = Value::String(segs[i].clone());
                if last {
                    match m.get_mut(&key) {
                        Some(slot) => merge(slot, &set.value),
                        None => {
                            m.insert(key, set.value.clone());
                        }
                    }
                    return Ok(());
                }
                cur = m
                    .entry(key)
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                i += 1;
            }
            Value::Sequence(list) => {
                // The longest run of segments that names an element (names
                // may contain dots), else an index.
                let mut hit = None;
                for j in (i + 1..=segs.len()).rev() {
                    let name = segs[i..j].join(".");
                    if let Some(k) = list.iter().position(|x| name_of(x) == Some(&name)) {
                        hit = Some((k, j));
                        break;
                    }
                }
                if hit.is_none() {
                    if let Ok(k) = segs[i].parse::<usize>() {
                        if k < list.len() {
                            hit = Some((k, i + 1));
                        }
                    }
                }
                let Some((k, j)) = hit else {
                    let names: Vec<&str> = list.iter().filter_map(name_of).collect();
                    return Err(format!(
                        "{}: no element named `{}` in `{}`; valid: {}",
                        set.text,
                        segs[i],
                        segs[..i].join("."),
                        names.join(", ")
                    ));
                };
                if j == segs.len() {
                    merge(&mut list[k], &set.value);
                    return Ok(());
                }
                cur = &mut list[k];
                i = j;
            }
            _ => {
                return Err(format!(
                    "{}: `{}` is not a map or a list",
                    set.text,
                    segs[..i].join(".")
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn maps_merge_named_lists_match_other_lists_replace() {
        let mut base = y("a: 1\nm: {x: 1, y: 2}\nsubnets: [{name: s1, cidr: c1, zone: z}, {name: s2, cidr: c2}]\nl: [1, 2]\n");
        merge(
            &mut base,
            &y("m: {y: 3}\nsubnets: [{name: s2, cidr: c9}, {name: s3, cidr: c3}]\nl: [7]\n"),
        );
        assert_eq!(
            base,
            y("a: 1\nm: {x: 1, y: 3}\nsubnets: [{name: s1, cidr: c1, zone: z}, {name: s2, cidr: c9}, {name: s3, cidr: c3}]\nl: [7]\n")
        );
    }

    #[test]
    fn set_addresses_list_elements_by_name() {
        let mut v = y("subnets: [{name: private-a, cidr: 10.0.0.0/24}, {name: a.b, cidr: x}]\nvpc_cni: {warm_prefix_target: 1}\n");
        apply_set(
            &mut v,
            &parse_set("subnets.private-a.cidr=10.0.0.0/22").unwrap(),
        )
        .unwrap();
        apply_set(&mut v, &parse_set("vpc_cni.warm_ip_target=5").unwrap()).unwrap();
        apply_set(&mut v, &parse_set("subnets.a.b.cidr=y").unwrap()).unwrap();
        apply_set(&mut v, &parse_set("subnets.0.zone=z1").unwrap()).unwrap();
        assert_eq!(
            v,
            y("subnets: [{name: private-a, cidr: 10.0.0.0/22, zone: z1}, {name: a.b, cidr: y}]\nvpc_cni: {warm_prefix_target: 1, warm_ip_target: 5}\n")
        );
        let e = apply_set(&mut v, &parse_set("subnets.nope.cidr=1").unwrap()).unwrap_err();
        assert!(
            e.contains("no element named `nope`") && e.contains("private-a, a.b"),
            "{e}"
        );
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("a..b=1").is_err());
    }
}
