//! Outputs of `subnetsim sweep` and `merge`: `sweep.csv` (one row per
//! variant and grid point), `bands.csv` (p5/p50/p95 over time), `runs.csv`
//! (one row per run), `bands-<variant>.png/.svg` and
//! `probability.png/.svg`; and, for a shard, `shard.json` and
//! `records.json`, which `merge` turns into exactly the files of the
//! unsharded sweep.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::charts::shade_warmup;
use super::charts::{int_label, num, render, s, text, tick, time_unit, Res, GRID};
use super::compare::PALETTE;
use super::{OutputError, OutputSet};
use crate::experiments::sweep::{stats, GroupStats, RunRecord};
use crate::time::Ms;

/// Everything needed to aggregate records without the scenario file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub scenario: String,
    /// Same scenario, settings, seeds and grid: the same key.
    pub key: String,
    pub seeds: Vec<u64>,
    pub grid: Vec<String>,
    pub groups: Vec<GroupInfo>,
    /// This output's slice `[k, n]` (`[0, 1]`: the whole sweep).
    pub shard: [usize; 2],
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupInfo {
    pub variant: String,
    pub point: Vec<String>,
    pub subtitle: String,
    pub warmup_ms: u64,
    pub times_ms: Vec<u64>,
}

impl Manifest {
    pub fn total(&self) -> usize {
        self.groups.len() * self.seeds.len()
    }
}

fn f(x: f64) -> String {
    format!("{x:.6}")
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_default()
}

/// Writes the results of a whole sweep (records of every work item).
pub fn write_results(
    set: &OutputSet,
    m: &Manifest,
    records: &[RunRecord],
) -> Result<Vec<GroupStats>, OutputError> {
    let per: Vec<Vec<&RunRecord>> = (0..m.groups.len())
        .map(|g| records.iter().filter(|r| r.group == g).collect())
        .collect();
    let all: Vec<GroupStats> = per.iter().map(|rs| stats(rs)).collect();
    let mut head = vec!["variant".to_string()];
    head.extend(m.grid.iter().cloned());
    // sweep.csv
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut h = head.clone();
    h.extend(
        [
            "runs",
            "runs_with_insufficient_cidr_blocks",
            "p_insufficient_cidr_blocks",
            "p_low",
            "p_high",
            "first_failure_p5_s",
            "first_failure_p50_s",
            "first_failure_p95_s",
            "insufficient_cidr_blocks_p50",
            "insufficient_cidr_blocks_p95",
            "insufficient_cidr_blocks_mean",
            "pod_wait_time_mean_s",
            "pod_wait_time_p95_s",
        ]
        .map(String::from),
    );
    w.write_record(&h).expect("CSV into memory");
    for (g, st) in m.groups.iter().zip(&all) {
        let mut row = vec![g.variant.clone()];
        row.extend(g.point.iter().cloned());
        row.extend([
            st.runs.to_string(),
            st.failing.to_string(),
            f(st.p),
            f(st.p_low),
            f(st.p_high),
            opt(st.first_failure[0]),
            opt(st.first_failure[1]),
            opt(st.first_failure[2]),
            st.icb.0.to_string(),
            st.icb.1.to_string(),
            format!("{:.3}", st.icb.2),
            format!("{:.3}", st.pod_wait.0),
            format!("{:.3}", st.pod_wait.1),
        ]);
        w.write_record(&row).expect("CSV into memory");
    }
    set.write("sweep.csv", &w.into_inner().expect("CSV into memory"))?;
    // bands.csv
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut h = head.clone();
    h.extend(
        [
            "time_s",
            "delegatable_blocks_p5",
            "delegatable_blocks_p50",
            "delegatable_blocks_p95",
            "free_ips_p5",
            "free_ips_p50",
            "free_ips_p95",
        ]
        .map(String::from),
    );
    w.write_record(&h).expect("CSV into memory");
    for (g, st) in m.groups.iter().zip(&all) {
        for (k, (b, fr)) in st.bands.iter().enumerate() {
            let mut row = vec![g.variant.clone()];
            row.extend(g.point.iter().cloned());
            let t = g.times_ms.get(k).copied().unwrap_or(0);
            row.push(crate::sim::observe::secs_text(Ms(t)));
            row.extend(b.iter().chain(fr.iter()).map(u32::to_string));
            w.write_record(&row).expect("CSV into memory");
        }
    }
    set.write("bands.csv", &w.into_inner().expect("CSV into memory"))?;
    // runs.csv
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut h = vec!["index".to_string(), "variant".to_string()];
    h.extend(m.grid.iter().cloned());
    h.extend(
        [
            "seed",
            "insufficient_cidr_blocks",
            "insufficient_free_addresses",
            "invalid_parameter_value",
            "first_insufficient_cidr_blocks_s",
            "pod_wait_time_s",
        ]
        .map(String::from),
    );
    w.write_record(&h).expect("CSV into memory");
    for r in records {
        let g = &m.groups[r.group];
        let mut row = vec![r.index.to_string(), g.variant.clone()];
        row.extend(g.point.iter().cloned());
        row.extend([
            r.seed.to_string(),
            r.insufficient_cidr_blocks.to_string(),
            r.insufficient_free_addresses.to_string(),
            r.invalid_parameter_value.to_string(),
            opt(r.first_insufficient_cidr_blocks_s),
            format!("{:.3}", r.pod_wait_time_s),
        ]);
        w.write_record(&row).expect("CSV into memory");
    }
    set.write("runs.csv", &w.into_inner().expect("CSV into memory"))?;
    // Charts.
    let variants: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for g in &m.groups {
            if !v.contains(&g.variant) {
                v.push(g.variant.clone());
            }
        }
        v
    };
    for v in &variants {
        let idx: Vec<usize> = (0..m.groups.len())
            .filter(|&i| m.groups[i].variant == *v)
            .collect();
        let (png, svg) = bands_chart(m, &all, &idx)?;
        set.write(&format!("bands-{v}.png"), &png)?;
        set.write(&format!("bands-{v}.svg"), &svg)?;
    }
    let (png, svg) = probability_chart(m, &all, &variants)?;
    set.write("probability.png", &png)?;
    set.write("probability.svg", &svg)?;
    Ok(all)
}

/// At most this many grid points get a panel in a band chart
/// (`bands.csv` holds them all).
pub const BAND_PANELS: usize = 6;
const BAND_H: u32 = 250;
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 120, 20);

fn bands_chart(
    m: &Manifest,
    all: &[GroupStats],
    idx: &[usize],
) -> Result<(Vec<u8>, Vec<u8>), OutputError> {
    let shown = &idx[..idx.len().min(BAND_PANELS)];
    let h = 110 + BAND_H * shown.len() as u32;
    render(
        "bands",
        (1500, h),
        &|r| draw_bands(r, m, all, shown, idx.len()),
        &|r| draw_bands(r, m, all, shown, idx.len()),
    )
}

fn draw_bands<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &Manifest,
    all: &[GroupStats],
    shown: &[usize],
    total: usize,
) -> Res<()> {
    let g0 = &m.groups[shown[0]];
    text(
        root,
        &format!(
            "{} — variant {}: {} seeds, p5 to p95 (shaded) and median",
            m.scenario,
            g0.variant,
            m.seeds.len()
        ),
        (20, 14),
        24,
        &BLACK,
    )?;
    let more = if total > shown.len() {
        format!(
            " · first {} of {} grid points (all in bands.csv)",
            shown.len(),
            total
        )
    } else {
        String::new()
    };
    text(
        root,
        &format!("{}{more}", g0.subtitle),
        (20, 48),
        15,
        &RGBColor(70, 70, 70),
    )?;
    text(root, "free addresses", (1250, 90), 15, &BLUE)?;
    text(
        root,
        "addresses in delegatable /28s",
        (1250, 112),
        15,
        &ORANGE,
    )?;
    if g0.warmup_ms > 0 {
        text(
            root,
            "grey: warm-up",
            (1250, 134),
            15,
            &RGBColor(120, 120, 120),
        )?;
    }
    let mut y = 80;
    for &i in shown {
        let g = &m.groups[i];
        let st = &all[i];
        let t: Vec<f64> = g.times_ms.iter().map(|&x| x as f64).collect();
        let span = Ms(g.times_ms.last().copied().unwrap_or(1).max(1));
        let (unit, unit_name) = time_unit(span);
        let xmax = span.as_millis() as f64 / unit;
        let warm = g.warmup_ms as f64;
        let ymax = st
            .bands
            .iter()
            .zip(&t)
            .filter(|(_, &tt)| tt >= warm)
            .map(|(b, _)| b.1[2].max(16 * b.0[2]))
            .max()
            .unwrap_or(16)
            .max(16) as f64
            * 1.12;
        let caption = if g.point.is_empty() {
            format!("{} seeds", st.runs)
        } else {
            format!("{} = {}", m.grid.join(", "), g.point.join(", "))
        };
        let area = root.clone().shrink((0, y), (1220, BAND_H));
        let mut ch = s(ChartBuilder::on(&area)
            .caption(caption, ("sans-serif", 16))
            .margin_right(10)
            .x_label_area_size(36)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax))?;
        s(ch.configure_mesh()
            .x_desc(format!("time ({unit_name})"))
            .y_desc("addresses")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&int_label)
            .label_style(("sans-serif", 13))
            .light_line_style(GRID)
            .draw())?;
        shade_warmup(&mut ch, warm / unit, ymax)?;
        let x = |k: usize| t[k] / unit;
        for (color, pick, scale) in [(BLUE, 1usize, 1.0), (ORANGE, 0usize, 16.0)] {
            let val = |k: usize, q: usize| {
                let b = &st.bands[k];
                let arr = if pick == 0 { b.0 } else { b.1 };
                (arr[q] as f64 * scale).min(ymax)
            };
            let n = st.bands.len().min(t.len());
            let mut poly: Vec<(f64, f64)> = (0..n).map(|k| (x(k), val(k, 2))).collect();
            poly.extend((0..n).rev().map(|k| (x(k), val(k, 0))));
            s(ch.draw_series([Polygon::new(poly, color.mix(0.25).filled())]))?;
            let mid: Vec<(f64, f64)> = (0..n).map(|k| (x(k), val(k, 1))).collect();
            super::charts::line(&mut ch, &mid, color.stroke_width(2))?;
        }
        y += BAND_H as i32;
    }
    Ok(())
}

fn probability_chart(
    m: &Manifest,
    all: &[GroupStats],
    variants: &[String],
) -> Result<(Vec<u8>, Vec<u8>), OutputError> {
    render(
        "probability",
        (1500, 620),
        &|r| draw_probability(r, m, all, variants),
        &|r| draw_probability(r, m, all, variants),
    )
}

fn draw_probability<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &Manifest,
    all: &[GroupStats],
    variants: &[String],
) -> Res<()> {
    let per_variant = m.groups.len() / variants.len().max(1);
    let points: Vec<String> = m.groups[..per_variant]
        .iter()
        .map(|g| {
            if g.point.is_empty() {
                "(no grid)".to_string()
            } else {
                g.point.join(", ")
            }
        })
        .collect();
    text(
        root,
        &format!(
            "{}: probability of at least one InsufficientCidrBlocks ({} seeds, 95% Wilson interval)",
            m.scenario,
            m.seeds.len()
        ),
        (20, 14),
        22,
        &BLACK,
    )?;
    let xdesc = if m.grid.is_empty() {
        "variant".to_string()
    } else {
        m.grid.join(", ")
    };
    let area = root.clone().shrink((0, 50), (1180, 560));
    let n = points.len().max(1) as f64;
    // Zoomed to the data: up to the largest upper bound, plus room.
    let top = all.iter().map(|g| g.p_high).fold(0.0f64, f64::max);
    let ymax = (top * 1.25).clamp(0.02, 1.0);
    let mut ch = s(ChartBuilder::on(&area)
        .margin_right(20)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..ymax))?;
    let labels = points.clone();
    s(ch.configure_mesh()
        .x_desc(xdesc)
        .y_desc("P(InsufficientCidrBlocks)")
        .x_labels(points.len().max(1))
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                labels
                    .get(i as usize)
                    .map(|l| {
                        if l.len() > 24 {
                            format!("{}…", &l[..23])
                        } else {
                            l.clone()
                        }
                    })
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{:.1}%", v * 100.0))
        .label_style(("sans-serif", 13))
        .light_line_style(GRID)
        .draw())?;
    for (vi, v) in variants.iter().enumerate() {
        let c = PALETTE[vi % PALETTE.len()];
        let off = (vi as f64 - (variants.len() as f64 - 1.0) / 2.0) * 0.06;
        let mut line = Vec::new();
        for (pi, g) in (0..m.groups.len())
            .filter(|&i| m.groups[i].variant == *v)
            .enumerate()
        {
            let st = &all[g];
            let x = pi as f64 + off;
            line.push((x, st.p));
            s(ch.draw_series([PathElement::new(
                vec![(x, st.p_low), (x, st.p_high)],
                c.stroke_width(2),
            )]))?;
            s(ch.draw_series([Circle::new((x, st.p), 5, c.filled())]))?;
        }
        s(ch.draw_series(LineSeries::new(line, c.stroke_width(2))))?;
        let ly = 80 + 24 * vi as i32;
        s(root.draw(&Circle::new((1215, ly + 8), 5, c.filled())))?;
        text(root, v, (1230, ly), 15, &BLACK)?;
    }
    text(
        root,
        "bars: 95% interval",
        (1210, 80 + 24 * variants.len() as i32 + 10),
        13,
        &RGBColor(70, 70, 70),
    )?;
    text(
        root,
        &format!("{} runs in all", num(all.iter().map(|g| g.runs).sum())),
        (1210, 80 + 24 * variants.len() as i32 + 30),
        13,
        &RGBColor(70, 70, 70),
    )?;
    Ok(())
}
