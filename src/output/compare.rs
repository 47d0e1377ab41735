//! Outputs of `subnetsim compare`: `comparison.csv`, `comparison.md`, and
//! three charts in the design of a single run's (one unit for addresses
//! and blocks, aligned panels on one time axis, axes zoomed to the data
//! after warm-up, failures as counts per bucket), each variant in a fixed
//! colour and line style across every chart.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use super::charts::{
    clock, draw_map, int_label, legend_line, map_geometry, num, render, s, shade_warmup, text,
    tick, time_unit, wrap, Res, GRID, LEGEND_W, W, Y_LABELS, Y_RIGHT,
};
use super::OutputError;
use crate::sim::observe::{RunResult, SampleRow};
use crate::time::Ms;

/// Okabe-Ito colours (distinguishable with colour-blindness); with the line
/// style (solid, dashed) alternating, variants stay apart in greyscale.
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

fn style(i: usize) -> (RGBColor, bool) {
    (PALETTE[i % PALETTE.len()], i % 2 == 1)
}

/// One row of `comparison.csv` / `comparison.md`.
#[derive(Clone, Debug, Serialize)]
pub struct ComparisonRow {
    pub variant: String,
    /// First `InsufficientCidrBlocks` after warm-up, seconds.
    pub first_insufficient_cidr_blocks_s: Option<f64>,
    pub insufficient_cidr_blocks: u64,
    pub insufficient_free_addresses: u64,
    pub invalid_parameter_value: u64,
    /// Each subnet's minimum delegatable /28s after warm-up, `name=N`.
    pub min_delegatable_blocks: String,
    pub peak_pods_waiting_ip: u32,
    pub pod_wait_time_s: f64,
    pub addresses_per_node: f64,
    pub prefixes_per_node: f64,
    pub peak_nodes: u32,
    /// Over the whole run.
    pub nodes_launched: u64,
    pub spot_interruptions: u64,
}

/// The rows, one per variant, in order.
pub fn rows(runs: &[(String, &RunResult)]) -> Vec<ComparisonRow> {
    runs.iter()
        .map(|(name, r)| {
            let s = &r.summary;
            ComparisonRow {
                variant: name.clone(),
                first_insufficient_cidr_blocks_s: s
                    .first_insufficient_cidr_blocks
                    .as_ref()
                    .map(|f| f.time_s),
                insufficient_cidr_blocks: s.failures.insufficient_cidr_blocks,
                insufficient_free_addresses: s.failures.insufficient_free_addresses,
                invalid_parameter_value: s.failures.invalid_parameter_value,
                min_delegatable_blocks: s
                    .min_delegatable_blocks
                    .iter()
                    .map(|m| format!("{}={}", m.subnet, m.delegatable_blocks))
                    .collect::<Vec<_>>()
                    .join(" "),
                peak_pods_waiting_ip: s.peak_pods_waiting_ip.pods,
                pod_wait_time_s: s.pod_wait_time_s,
                addresses_per_node: s.addresses_per_node,
                prefixes_per_node: s.prefixes_per_node,
                peak_nodes: s.peak_nodes,
                nodes_launched: s.node_churn.nodes_launched,
                spot_interruptions: s.node_churn.spot_interruptions,
            }
        })
        .collect()
}

pub fn csv(rows: &[ComparisonRow]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).expect("CSV into memory");
    }
    w.into_inner().expect("CSV into memory")
}

/// A Markdown table ready to paste into a review.
pub fn markdown(title: &str, seed: u64, warmup: Ms, rows: &[ComparisonRow]) -> Vec<u8> {
    let mut out = format!("# {title}: comparison (seed {seed})\n\n");
    if warmup > Ms::ZERO {
        out.push_str(&format!(
            "After a {warmup} warm-up. Failures count failed EC2 calls.\n\n"
        ));
    } else {
        out.push_str("Failures count failed EC2 calls.\n\n");
    }
    out.push_str("| variant | first InsufficientCidrBlocks | InsufficientCidrBlocks | InsufficientFreeAddressesInSubnet | InvalidParameterValue | min delegatable /28s | peak pods waiting for an address | pod time waiting | addresses per node | prefixes per node | peak nodes | nodes launched | spot interruptions |\n");
    out.push_str("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let first = r
            .first_insufficient_cidr_blocks_s
            .map_or("none".to_string(), |t| clock(Ms((t * 1000.0) as u64)));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.variant,
            first,
            num(r.insufficient_cidr_blocks),
            num(r.insufficient_free_addresses),
            num(r.invalid_parameter_value),
            r.min_delegatable_blocks,
            r.peak_pods_waiting_ip,
            human(r.pod_wait_time_s),
            r.addresses_per_node,
            r.prefixes_per_node,
            r.peak_nodes,
            num(r.nodes_launched),
            num(r.spot_interruptions)
        ));
    }
    out.into_bytes()
}

/// Seconds for a reader: `45 s`, `12.8 min`, `19.4 h`.
fn human(secs: f64) -> String {
    if secs >= 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else if secs >= 60.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{secs:.0} s")
    }
}

/// Per variant, per sample time: sums over the variant's subnets.
struct Totals {
    t: Vec<Ms>,
    free: Vec<u64>,
    blocks: Vec<u64>,
    waiting: Vec<u64>,
    icb: Vec<u64>,
}

fn totals(r: &RunResult) -> Totals {
    let mut by_time: std::collections::BTreeMap<Ms, [u64; 4]> = Default::default();
    for x in &r.chart_samples {
        let e = by_time.entry(x.time).or_default();
        let add = |e: &mut [u64; 4], x: &SampleRow| {
            e[0] += u64::from(x.free_ips);
            e[1] += u64::from(x.delegatable_blocks);
            e[2] += u64::from(x.pods_waiting_ip);
            e[3] += x.insufficient_cidr_blocks;
        };
        add(e, x);
    }
    let mut t = Totals {
        t: Vec::new(),
        free: Vec::new(),
        blocks: Vec::new(),
        waiting: Vec::new(),
        icb: Vec::new(),
    };
    for (k, v) in by_time {
        t.t.push(k);
        t.free.push(v[0]);
        t.blocks.push(v[1]);
        t.waiting.push(v[2]);
        t.icb.push(v[3]);
    }
    t
}

const PANEL: u32 = 260;
const RUG_ROW: u32 = 22;

fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    runs: &[(String, &RunResult)],
) -> Res<i32> {
    text(root, title, (20, 14), 26, &BLACK)?;
    let mut y = 50;
    let base = runs
        .first()
        .map(|r| r.1.subtitle.clone())
        .unwrap_or_default();
    for line in wrap(&format!("base: {base}"), 150) {
        text(root, &line, (20, y), 16, &RGBColor(70, 70, 70))?;
        y += 22;
    }
    Ok(y + 8)
}

fn variants_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[(String, &RunResult)],
    x: i32,
    mut y: i32,
) -> Res<()> {
    for (i, (name, _)) in runs.iter().enumerate() {
        let (c, dashed) = style(i);
        legend_line(root, x, y, &c, dashed, name)?;
        y += 24;
    }
    Ok(())
}

fn time_axis(runs: &[(String, &RunResult)]) -> (f64, &'static str, f64, f64) {
    let dur = runs
        .iter()
        .map(|r| r.1.summary.simulated_duration)
        .max()
        .unwrap_or(Ms(1))
        .max(Ms(1));
    let (unit, name) = time_unit(dur);
    let warm = runs
        .first()
        .map_or(0.0, |r| r.1.warmup.as_millis() as f64 / unit);
    (unit, name, dur.as_millis() as f64 / unit, warm)
}

/// A panel of one quantity per variant (with warm-up shading); `x_axis`
/// draws the time labels.
#[allow(clippy::too_many_arguments)]
fn panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    y: i32,
    h: u32,
    desc: &str,
    series: &[Vec<(f64, f64)>],
    xmax: f64,
    warm: f64,
    x_axis: Option<&str>,
) -> Res<()> {
    let after = |p: &&(f64, f64)| p.0 >= warm;
    let ymax = series
        .iter()
        .flat_map(|s| s.iter().filter(after))
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(4.0)
        * 1.12;
    let area = root.clone().shrink((0, y), (W - LEGEND_W, h));
    let mut ch = s(ChartBuilder::on(&area)
        .margin_right(10)
        .margin_top(8)
        .x_label_area_size(if x_axis.is_some() { 44 } else { 0 })
        .y_label_area_size(Y_LABELS)
        .right_y_label_area_size(Y_RIGHT)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax))?;
    let mut mesh = ch.configure_mesh();
    mesh.y_desc(desc)
        .y_label_formatter(&|v| int_label(v))
        .x_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(GRID);
    match x_axis {
        Some(d) => mesh.x_desc(d.to_string()),
        None => mesh.x_labels(0),
    };
    s(mesh.draw())?;
    shade_warmup(&mut ch, warm, ymax)?;
    for (i, pts) in series.iter().enumerate() {
        let (c, dashed) = style(i);
        let pts: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1.min(ymax))).collect();
        if dashed {
            super::charts::dashed_line(&mut ch, &pts, (8, 5), c.stroke_width(3))?;
        } else {
            super::charts::line(&mut ch, &pts, c.stroke_width(3))?;
        }
    }
    Ok(())
}

/// A row per variant: `InsufficientCidrBlocks` per bucket as bars, height
/// by count (scaled to the largest bucket of all variants).
#[allow(clippy::too_many_arguments)]
fn rug<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    y: i32,
    all: &[Totals],
    unit: f64,
    unit_name: &str,
    xmax: f64,
    warm: f64,
    names: &[String],
) -> Res<u64> {
    let h = RUG_ROW * all.len() as u32 + 54;
    let area = root.clone().shrink((0, y), (W - LEGEND_W, h));
    let rows = all.len() as f64;
    let mut ch = s(ChartBuilder::on(&area)
        .margin_right(10)
        .margin_top(8)
        .x_label_area_size(44)
        .y_label_area_size(Y_LABELS)
        .right_y_label_area_size(Y_RIGHT)
        .build_cartesian_2d(0f64..xmax, 0f64..rows))?;
    s(ch.configure_mesh()
        .y_labels(0)
        .x_desc(format!("time ({unit_name})"))
        .x_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(GRID)
        .draw())?;
    shade_warmup(&mut ch, warm, rows)?;
    let peak = all
        .iter()
        .flat_map(|t| t.icb.windows(2).map(|w| w[1] - w[0]))
        .max()
        .unwrap_or(0)
        .max(1);
    for (i, t) in all.iter().enumerate() {
        let (c, _) = style(i);
        let base = rows - 1.0 - i as f64;
        for k in 1..t.t.len() {
            let n = t.icb[k] - t.icb[k - 1];
            if n > 0 {
                let top = base + 0.15 + 0.7 * (n as f64 / peak as f64).max(0.1);
                let (a, b) = (
                    t.t[k - 1].as_millis() as f64 / unit,
                    t.t[k].as_millis() as f64 / unit,
                );
                s(ch.draw_series([Rectangle::new([(a, base + 0.1), (b, top)], c.filled())]))?;
            }
        }
        let label_y = y + 8 + ((i as f64 + 0.5) * (h as f64 - 8.0 - 44.0) / rows) as i32 - 8;
        text(root, &names[i], (8, label_y), 13, &BLACK)?;
    }
    Ok(peak)
}

fn pts(t: &Totals, unit: f64, f: impl Fn(usize) -> f64) -> Vec<(f64, f64)> {
    (0..t.t.len())
        .map(|k| (t.t[k].as_millis() as f64 / unit, f(k)))
        .collect()
}

/// `compare-blocks`: delegatable /28s (as addresses, 16 per block) of every
/// variant, and a rug of `InsufficientCidrBlocks` per bucket.
pub fn blocks_chart(
    title: &str,
    runs: &[(String, &RunResult)],
) -> Result<(Vec<u8>, Vec<u8>), OutputError> {
    let h = head_h(runs) + PANEL + RUG_ROW * runs.len() as u32 + 54 + 30;
    render(
        "compare-blocks",
        (W, h),
        &|r| draw_blocks(r, title, runs),
        &|r| draw_blocks(r, title, runs),
    )
}

fn head_h(runs: &[(String, &RunResult)]) -> u32 {
    let sub = runs
        .first()
        .map(|r| r.1.subtitle.clone())
        .unwrap_or_default();
    58 + 22 * wrap(&format!("base: {sub}"), 150).len() as u32 + 8
}

fn draw_blocks<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    runs: &[(String, &RunResult)],
) -> Res<()> {
    let all: Vec<Totals> = runs.iter().map(|r| totals(r.1)).collect();
    let names: Vec<String> = runs.iter().map(|r| r.0.clone()).collect();
    let mut y = header(
        root,
        &format!("{title}: delegatable /28 blocks of each variant"),
        runs,
    )?;
    let (unit, unit_name, xmax, warm) = time_axis(runs);
    let series: Vec<Vec<(f64, f64)>> = all
        .iter()
        .map(|t| pts(t, unit, |k| 16.0 * t.blocks[k] as f64))
        .collect();
    panel(
        root,
        y,
        PANEL,
        "addresses in delegatable /28s",
        &series,
        xmax,
        warm,
        None,
    )?;
    let lx = (W - LEGEND_W + 16) as i32;
    variants_legend(root, runs, lx, y + 14)?;
    y += PANEL as i32;
    let peak = rug(root, y, &all, unit, unit_name, xmax, warm, &names)?;
    text(
        root,
        "InsufficientCidrBlocks per bucket,",
        (lx, y + 10),
        14,
        &BLACK,
    )?;
    text(
        root,
        &format!("one row per variant (tallest: {})", num(peak)),
        (lx, y + 28),
        14,
        &BLACK,
    )?;
    Ok(())
}

/// `compare-addresses`: free addresses and pods waiting for an address of
/// every variant.
pub fn addresses_chart(
    title: &str,
    runs: &[(String, &RunResult)],
) -> Result<(Vec<u8>, Vec<u8>), OutputError> {
    let h = head_h(runs) + PANEL + PANEL + 44 + 30;
    render(
        "compare-addresses",
        (W, h),
        &|r| draw_addresses(r, title, runs),
        &|r| draw_addresses(r, title, runs),
    )
}

fn draw_addresses<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    runs: &[(String, &RunResult)],
) -> Res<()> {
    let all: Vec<Totals> = runs.iter().map(|r| totals(r.1)).collect();
    let mut y = header(
        root,
        &format!("{title}: free addresses and pods waiting, each variant"),
        runs,
    )?;
    let (unit, unit_name, xmax, warm) = time_axis(runs);
    let free: Vec<Vec<(f64, f64)>> = all
        .iter()
        .map(|t| pts(t, unit, |k| t.free[k] as f64))
        .collect();
    panel(root, y, PANEL, "free addresses", &free, xmax, warm, None)?;
    let lx = (W - LEGEND_W + 16) as i32;
    variants_legend(root, runs, lx, y + 14)?;
    y += PANEL as i32;
    let wait: Vec<Vec<(f64, f64)>> = all
        .iter()
        .map(|t| pts(t, unit, |k| t.waiting[k] as f64))
        .collect();
    let axis = format!("time ({unit_name})");
    panel(
        root,
        y,
        PANEL + 44,
        "pods waiting for an address",
        &wait,
        xmax,
        warm,
        Some(&axis),
    )
}

/// `compare-maps`: each variant's first subnet at its worst moment, side by
/// side (the single-run map's cells and letters).
pub fn maps_chart(
    title: &str,
    runs: &[(String, &RunResult)],
) -> Result<(Vec<u8>, Vec<u8>), OutputError> {
    let geo: Vec<(usize, i32, usize)> = runs.iter().map(|r| map_geometry(&r.1.worst[0])).collect();
    let w = (geo.iter().map(|g| g.0 as i32 * g.1 + 60).sum::<i32>() + 60).max(900) as u32;
    let h = 150 + geo.iter().map(|g| g.2 as i32 * g.1).max().unwrap_or(0) as u32 + 30;
    render(
        "compare-maps",
        (w, h),
        &|r| draw_maps(r, title, runs),
        &|r| draw_maps(r, title, runs),
    )
}

fn draw_maps<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    runs: &[(String, &RunResult)],
) -> Res<()> {
    text(
        root,
        &format!("{title}: each variant's first subnet at its worst moment"),
        (20, 14),
        24,
        &BLACK,
    )?;
    text(
        root,
        "letters and colours as in subnet-map.png of each variant's folder",
        (20, 50),
        15,
        &RGBColor(70, 70, 70),
    )?;
    let mut x = 20;
    for (i, (name, r)) in runs.iter().enumerate() {
        let snap = &r.worst[0];
        let (c, _) = style(i);
        let (cols, cell, _) = map_geometry(snap);
        text(root, name, (x, 84), 17, &c)?;
        let when = if snap.at_failure {
            " (first failure)"
        } else {
            ""
        };
        text(
            root,
            &format!("{}{when}", r.subnets[0].cidr),
            (x, 104),
            13,
            &BLACK,
        )?;
        text(
            root,
            &format!(
                "{} delegatable, {} free",
                snap.delegatable,
                num(u64::from(snap.free_ips))
            ),
            (x, 122),
            13,
            &RGBColor(70, 70, 70),
        )?;
        draw_map(root, snap, x, 144, cols, cell)?;
        x += cols as i32 * cell + 60;
    }
    Ok(())
}
