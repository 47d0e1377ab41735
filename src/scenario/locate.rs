//! Finds the line and column of a field path (`node_pools[1].instance_type`)
//! in block-style YAML text, so errors found after parsing (an unknown
//! instance type, a reservation outside its subnet) can name their place.
//! serde_yaml reports positions for syntax and type errors itself but keeps
//! no spans for later checks. Flow-style collections (`[a, b]`) are not
//! entered: the position of the collection is given instead.

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A field path, printed as `node_pools[1].instance_type`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

struct Line<'a> {
    /// Column of the dash when the line starts a list item.
    dash: Option<usize>,
    /// Column where the content (after any dash) starts.
    indent: usize,
    /// The mapping key on this line, if any.
    key: Option<&'a str>,
}

fn parse_lines(text: &str) -> Vec<Option<Line<'_>>> {
    text.lines()
        .map(|raw| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                return None;
            }
            let mut indent = raw.len() - trimmed.len();
            let mut rest = trimmed;
            let mut dash = None;
            if rest == "-" || rest.starts_with("- ") {
                dash = Some(indent);
                let after = rest[1..].trim_start();
                indent += rest.len() - after.len();
                rest = after;
            }
            let key = rest.find(':').and_then(|p| {
                let k = rest[..p].trim().trim_matches(|c| c == '"' || c == '\'');
                let ok = !k.is_empty()
                    && !k.contains(' ')
                    && (rest.len() == p + 1 || rest[p + 1..].starts_with([' ', '\t']));
                ok.then_some(k)
            });
            Some(Line { dash, indent, key })
        })
        .collect()
}

/// 1-based line and column of `path` (or of the deepest part found).
pub fn locate(text: &str, path: &Path) -> Option<(usize, usize)> {
    let lines = parse_lines(text);
    let first = lines.iter().flatten().next()?;
    let mut lo = 0usize;
    let mut hi = lines.len();
    let mut indent = first.dash.unwrap_or(first.indent);
    let mut found: Option<(usize, usize)> = None;
    for seg in &path.0 {
        match seg {
            Seg::Key(k) => {
                let hit = (lo..hi).find(|&i| {
                    lines[i]
                        .as_ref()
                        .is_some_and(|l| l.indent == indent && l.key == Some(k.as_str()))
                });
                let Some(i) = hit else { return found };
                let l = lines[i].as_ref().expect("hit");
                found = Some((i + 1, l.indent + 1));
                // Children: following lines indented deeper, or list items
                // whose dash sits at the key's indent.
                let mut end = i + 1;
                while end < hi {
                    if let Some(c) = &lines[end] {
                        let deeper = c.indent > indent && c.dash.is_none_or(|d| d >= indent);
                        if !deeper {
                            break;
                        }
                    }
                    end += 1;
                }
                let child = (i + 1..end).find_map(|j| lines[j].as_ref());
                let Some(child) = child else { return found };
                lo = i + 1;
                hi = end;
                indent = child.dash.unwrap_or(child.indent);
            }
            Seg::Index(n) => {
                let items: Vec<usize> = (lo..hi)
                    .filter(|&i| lines[i].as_ref().is_some_and(|l| l.dash == Some(indent)))
                    .collect();
                let Some(&i) = items.get(*n) else {
                    return found;
                };
                let l = lines[i].as_ref().expect("item");
                found = Some((i + 1, indent + 1));
                lo = i;
                hi = items.get(n + 1).copied().unwrap_or(hi);
                indent = l.indent;
                // The item's own first line holds its first key at `indent`;
                // treat it as a plain line from now on.
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: &str = "\
name: demo
subnets:
  - name: a
    cidr: 10.0.0.0/24
    reservations:
      - cidr: 10.0.0.64/26
        type: prefix
  - name: b
    cidr: 10.0.1.0/24
node_pools:
- name: p
  instance_type: m5.larg
  subnets: [a, b]
";

    fn p(segs: &[Seg]) -> Path {
        Path(segs.to_vec())
    }

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn finds_nested_fields() {
        assert_eq!(locate(Y, &p(&[k("name")])), Some((1, 1)));
        assert_eq!(
            locate(Y, &p(&[k("subnets"), Seg::Index(1), k("cidr")])),
            Some((9, 5))
        );
        assert_eq!(
            locate(
                Y,
                &p(&[
                    k("subnets"),
                    Seg::Index(0),
                    k("reservations"),
                    Seg::Index(0),
                    k("type")
                ])
            ),
            Some((7, 9))
        );
        assert_eq!(
            locate(Y, &p(&[k("node_pools"), Seg::Index(0), k("instance_type")])),
            Some((12, 3))
        );
        // Flow sequences are not entered: the key's position is given.
        assert_eq!(
            locate(
                Y,
                &p(&[k("node_pools"), Seg::Index(0), k("subnets"), Seg::Index(1)])
            ),
            Some((13, 3))
        );
        assert_eq!(
            p(&[k("node_pools"), Seg::Index(0), k("subnets")]).to_string(),
            "node_pools[0].subnets"
        );
    }
}
