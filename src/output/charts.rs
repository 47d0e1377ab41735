//! The charts, drawn once for any plotters backend and rendered as PNG (an
//! embedded font, DejaVu Sans, so no system font is needed) and SVG.
//!
//! - `free-ips`: per subnet, three aligned panels on one time axis: free
//!   addresses against addresses in delegatable /28 blocks (one unit, the
//!   gap shaded: free but not delegatable); pods waiting for an address,
//!   pending pods and nodes; failed EC2 calls per time bucket, by kind.
//! - `subnet-map`: per subnet, the worst moment after warm-up and the end;
//!   address by address up to a /22 (what holds each address), block by
//!   block beyond; a letter or pattern beside each colour.
//!
//! Every chart states the scenario, seed and the settings that matter.
//! Legends stand outside the data and list only what is present.

use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::OutputError;
use crate::addr::BlockClass;
use crate::sim::observe::{Holder, RunResult, SampleRow, Snapshot};
use crate::time::Ms;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

pub(crate) fn init_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| ())
            .expect("embedded font is valid");
    });
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 120, 20);
const GAP: RGBColor = RGBColor(250, 200, 160);
const WAIT: RGBColor = RGBColor(148, 103, 189);
pub(crate) const PENDING: RGBColor = RGBColor(120, 120, 120);
const NODES: RGBColor = RGBColor(40, 40, 40);
pub(crate) const WARMUP: RGBColor = RGBColor(225, 225, 225);
pub(crate) const GRID: RGBColor = RGBColor(235, 235, 235);
/// Failure kinds: InsufficientCidrBlocks, InsufficientFreeAddressesInSubnet,
/// InvalidParameterValue.
pub(crate) const FAIL: [(RGBColor, &str); 3] = [
    (RGBColor(214, 39, 40), "InsufficientCidrBlocks"),
    (RGBColor(120, 30, 120), "InsufficientFreeAddressesInSubnet"),
    (RGBColor(240, 160, 40), "InvalidParameterValue"),
];

pub(crate) type Res<T> = Result<T, String>;

pub(crate) fn s<T, E: std::fmt::Display>(r: Result<T, E>) -> Res<T> {
    r.map_err(|e| e.to_string())
}

fn chart_err(path: &str) -> impl Fn(String) -> OutputError + '_ {
    move |message| OutputError::Chart {
        path: path.into(),
        message,
    }
}

/// PNG bytes of an RGB buffer.
fn encode_png(buf: &[u8], w: u32, h: u32) -> Res<Vec<u8>> {
    let mut out = Vec::new();
    {
        let enc = image::codecs::png::PngEncoder::new(&mut out);
        s(image::ImageEncoder::write_image(
            enc,
            buf,
            w,
            h,
            image::ColorType::Rgb8,
        ))?;
    }
    Ok(out)
}

/// Draws with `draw` on a PNG and on an SVG of the same size.
pub(crate) fn render(
    name: &str,
    (w, h): (u32, u32),
    draw: &dyn Fn(&DrawingArea<BitMapBackend, Shift>) -> Res<()>,
    draw_svg: &dyn Fn(&DrawingArea<SVGBackend, Shift>) -> Res<()>,
) -> Result<(Vec<u8>, Vec<u8>), OutputError> {
    init_font();
    let e = chart_err(name);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        s(root.fill(&WHITE)).map_err(&e)?;
        draw(&root).map_err(&e)?;
        s(root.present()).map_err(&e)?;
    }
    let png = encode_png(&buf, w, h).map_err(&e)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        s(root.fill(&WHITE)).map_err(&e)?;
        draw_svg(&root).map_err(&e)?;
        s(root.present()).map_err(&e)?;
    }
    Ok((png, svg.into_bytes()))
}

/// A line split into runs that each rise or each fall, never both.
///
/// plotters strokes a line wider than a pixel as one polygon, each corner
/// the meeting of the two offset edges (`plotters-backend`,
/// `rasterizer::path::compute_polygon_vertex`), capped on the outer side
/// of a turn but not on the inner. Where a line turns back on itself, as
/// a day's samples do within one pixel column, the inner edges meet far
/// away: thin strokes across the panel and into the next. Within a run
/// time and value both move one way, so no corner turns more than a
/// right angle. Consecutive runs share their turning point: the line
/// stays whole.
pub(crate) fn monotone_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut dir = 0i8;
    for &p in points {
        if let Some(&last) = run.last() {
            let d = match p.1.partial_cmp(&last.1) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
            if d != 0 && dir != 0 && d != dir {
                runs.push(std::mem::replace(&mut run, vec![last]));
                dir = 0;
            }
            if d != 0 {
                dir = d;
            }
        }
        run.push(p);
    }
    if run.len() > 1 {
        runs.push(run);
    }
    runs
}

/// `points` as a solid line `style` wide, drawn in [`monotone_runs`].
pub(crate) fn line<DB: DrawingBackend>(
    ch: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: &[(f64, f64)],
    style: ShapeStyle,
) -> Res<()> {
    s(ch.draw_series(
        monotone_runs(points)
            .into_iter()
            .map(|r| PathElement::new(r, style)),
    ))?;
    Ok(())
}

/// `points` as a dashed line (`dash` on, `gap` off, in pixels), drawn in
/// [`monotone_runs`].
pub(crate) fn dashed_line<DB: DrawingBackend>(
    ch: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: &[(f64, f64)],
    (dash, gap): (i32, i32),
    style: ShapeStyle,
) -> Res<()> {
    s(ch.draw_series(
        monotone_runs(points)
            .into_iter()
            .map(|r| DashedPathElement::new(r, dash, gap, style)),
    ))?;
    Ok(())
}

/// Shades the warm-up, `[0, warm)` up to `top`, on a chart in time units.
pub(crate) fn shade_warmup<DB: DrawingBackend>(
    ch: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    warm: f64,
    top: f64,
) -> Res<()> {
    if warm > 0.0 {
        s(ch.draw_series([Rectangle::new([(0.0, 0.0), (warm, top)], WARMUP.filled())]))?;
    }
    Ok(())
}

/// Time unit for an axis covering `span`.
pub(crate) fn time_unit(span: Ms) -> (f64, &'static str) {
    let s = span.as_millis();
    if s >= 2 * 86_400_000 {
        (86_400_000.0, "days")
    } else if s >= 2 * 3_600_000 {
        (3_600_000.0, "hours")
    } else if s >= 2 * 60_000 {
        (60_000.0, "minutes")
    } else {
        (1000.0, "seconds")
    }
}

/// A tick label with at most two decimals and no trailing zeros.
pub(crate) fn tick(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// `h:mm:ss` (days as `Nd h:mm:ss`).
pub(crate) fn clock(t: Ms) -> String {
    let s = t.as_millis() / 1000;
    let base = format!("{}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60);
    if s >= 86_400 {
        format!("{}d {base}", s / 86_400)
    } else {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

/// Thousands separators.
pub(crate) fn num(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A count axis label: whole numbers only.
pub(crate) fn int_label(v: &f64) -> String {
    if v.fract() == 0.0 {
        num(*v as u64)
    } else {
        String::new()
    }
}

/// Splits `text` into lines of at most `width` characters at " · ".
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for part in text.split(" · ") {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + part.len() + 3 > width {
            lines.push(part.to_string());
        } else {
            if !last.is_empty() {
                last.push_str(" · ");
            }
            last.push_str(part);
        }
    }
    lines
}

pub(crate) fn text<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    t: &str,
    (x, y): (i32, i32),
    size: u32,
    color: &RGBColor,
) -> Res<()> {
    s(root.draw(&Text::new(
        t.to_string(),
        (x, y),
        ("sans-serif", size).into_font().color(color),
    )))
}

/// Title and wrapped subtitle; returns the height used.
fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &RunResult,
    what: &str,
) -> Res<i32> {
    let title = format!("{} (seed {}): {what}", r.summary.scenario, r.summary.seed);
    text(root, &title, (20, 14), 26, &BLACK)?;
    let mut y = 50;
    let mut sub = r.subtitle.clone();
    if r.warmup > Ms::ZERO {
        sub.push_str(&format!(" · warm-up {} (shaded)", r.warmup));
    }
    for line in wrap(&sub, 150) {
        text(root, &line, (20, y), 16, &RGBColor(70, 70, 70))?;
        y += 22;
    }
    Ok(y + 8)
}

pub(crate) fn usable(cidr: &str) -> (u64, u64) {
    let net: ipnet::Ipv4Net = cidr.parse().expect("a run's subnet CIDR");
    let size = 1u64 << (32 - net.prefix_len());
    (size - 5, (size / 16).saturating_sub(2))
}

fn subnet_caption(r: &RunResult, si: usize) -> String {
    let info = &r.subnets[si];
    let (ips, blocks) = usable(&info.cidr);
    let res = if info.reservations.is_empty() {
        String::new()
    } else {
        format!("; reservations: {}", info.reservations)
    };
    format!(
        "{} {} ({}): {} usable addresses, {} delegatable /28s at most{res}",
        info.name,
        info.cidr,
        info.zone,
        num(ips),
        num(blocks)
    )
}

// ---- free-ips ----

pub(crate) const W: u32 = 1500;
pub(crate) const LEGEND_W: u32 = 330;
pub(crate) const Y_LABELS: u32 = 90;
const PANEL_A: u32 = 250;
const PANEL_B: u32 = 160;
const STRIP: u32 = 140;
pub(crate) const Y_RIGHT: u32 = 60;
const SUBNET_H: u32 = 34 + PANEL_A + PANEL_B + STRIP + 24;

fn free_ips_size(r: &RunResult) -> (u32, u32) {
    let head = 58 + 22 * wrap(&r.subtitle, 150).len() as u32 + 8;
    (W, head + SUBNET_H * r.subnets.len().max(1) as u32)
}

/// `free-ips.png` and `free-ips.svg`.
pub fn free_ips(r: &RunResult) -> Result<(Vec<u8>, Vec<u8>), OutputError> {
    render(
        "free-ips",
        free_ips_size(r),
        &|root| draw_free_ips(root, r),
        &|root| draw_free_ips(root, r),
    )
}

fn draw_free_ips<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &RunResult) -> Res<()> {
    let mut y = header(root, r, "free addresses against delegatable /28 blocks")?;
    let dur = r.summary.simulated_duration.max(Ms(1));
    let (unit, unit_name) = time_unit(dur);
    let xmax = dur.as_millis() as f64 / unit;
    let warm = r.warmup.as_millis() as f64 / unit;
    for si in 0..r.subnets.len() {
        let rows: Vec<&SampleRow> = r
            .chart_samples
            .iter()
            .filter(|x| x.subnet == r.subnets[si].name)
            .collect();
        text(root, &subnet_caption(r, si), (20, y + 6), 18, &BLACK)?;
        y += 34;
        let t = |row: &SampleRow| row.time.as_millis() as f64 / unit;
        // Panel A: addresses.
        let after: Vec<&&SampleRow> = rows.iter().filter(|x| x.time >= r.warmup).collect();
        let pool = if after.is_empty() {
            rows.iter().collect()
        } else {
            after
        };
        let ymax = pool
            .iter()
            .map(|x| x.free_ips.max(16 * x.delegatable_blocks))
            .max()
            .unwrap_or(0)
            .max(16) as f64
            * 1.12;
        let area = root.clone().shrink((0, y), (W - LEGEND_W, PANEL_A));
        let mut ch = s(ChartBuilder::on(&area)
            .margin_right(10)
            .y_label_area_size(Y_LABELS)
            .right_y_label_area_size(Y_RIGHT)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax))?;
        s(ch.configure_mesh()
            .y_desc("addresses")
            .x_labels(0)
            .y_label_formatter(&|v| num(*v as u64))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(GRID)
            .draw())?;
        shade_warmup(&mut ch, warm, ymax)?;
        // Values above the zoomed axis (during warm-up) are drawn at its top.
        let free: Vec<(f64, f64)> = rows
            .iter()
            .map(|x| (t(x), (x.free_ips as f64).min(ymax)))
            .collect();
        let deleg: Vec<(f64, f64)> = rows
            .iter()
            .map(|x| (t(x), (16.0 * x.delegatable_blocks as f64).min(ymax)))
            .collect();
        let mut gap: Vec<(f64, f64)> = free.clone();
        gap.extend(deleg.iter().rev());
        s(ch.draw_series([Polygon::new(gap, GAP.filled())]))?;
        line(&mut ch, &free, BLUE.stroke_width(3))?;
        dashed_line(&mut ch, &deleg, (8, 5), ORANGE.stroke_width(3))?;
        let lx = (W - LEGEND_W + 16) as i32;
        legend_line(root, lx, y + 14, &BLUE, false, "free addresses")?;
        legend_line(
            root,
            lx,
            y + 38,
            &ORANGE,
            true,
            "addresses in delegatable /28s",
        )?;
        text(
            root,
            "(16 × delegatable blocks)",
            (lx + 40, y + 54),
            13,
            &PENDING,
        )?;
        legend_box(root, lx, y + 80, &GAP, "free but not delegatable")?;
        if warm > 0.0 {
            legend_box(
                root,
                lx,
                y + 104,
                &WARMUP,
                "warm-up (left out of the summary)",
            )?;
        }
        y += PANEL_A as i32;
        // Panel B: pods and nodes.
        // Zoomed to the data after warm-up, like panel A (the start-up's
        // pending pods would flatten everything else).
        let pmax = pool
            .iter()
            .map(|x| x.pods_waiting_ip.max(x.pods_pending))
            .max()
            .unwrap_or(0)
            .max(4) as f64
            * 1.15;
        let nmax = (rows.iter().map(|x| x.nodes).max().unwrap_or(0).max(1) as f64 * 1.25).ceil();
        let area = root.clone().shrink((0, y), (W - LEGEND_W, PANEL_B));
        let mut ch = s(ChartBuilder::on(&area)
            .margin_right(10)
            .margin_top(8)
            .y_label_area_size(Y_LABELS)
            .right_y_label_area_size(Y_RIGHT)
            .build_cartesian_2d(0f64..xmax, 0f64..pmax))?
        .set_secondary_coord(0f64..xmax, 0f64..nmax);
        s(ch.configure_mesh()
            .y_desc("pods")
            .x_labels(0)
            .y_labels(5)
            .y_label_formatter(&|v| num(*v as u64))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(GRID)
            .draw())?;
        s(ch.configure_secondary_axes()
            .y_desc("nodes")
            .y_labels(4)
            .y_label_formatter(&int_label)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw())?;
        shade_warmup(&mut ch, warm, pmax)?;
        let series = |f: &dyn Fn(&SampleRow) -> u32| -> Vec<(f64, f64)> {
            rows.iter()
                .map(|x| (t(x), (f(x) as f64).min(pmax)))
                .collect()
        };
        let nodes: Vec<(f64, f64)> = rows.iter().map(|x| (t(x), x.nodes as f64)).collect();
        s(ch.draw_secondary_series(
            monotone_runs(&nodes)
                .into_iter()
                .map(|r| DashedPathElement::new(r, 3, 4, NODES.stroke_width(2))),
        ))?;
        line(
            &mut ch,
            &series(&|x| x.pods_pending),
            PENDING.stroke_width(2),
        )?;
        line(
            &mut ch,
            &series(&|x| x.pods_waiting_ip),
            WAIT.stroke_width(3),
        )?;
        legend_line(
            root,
            lx,
            y + 14,
            &WAIT,
            false,
            "pods waiting for an address",
        )?;
        text(
            root,
            "(bound, ContainerCreating)",
            (lx + 40, y + 30),
            13,
            &PENDING,
        )?;
        legend_line(root, lx, y + 54, &PENDING, false, "pods pending (cluster)")?;
        let peak_nodes = rows.iter().map(|x| x.nodes).max().unwrap_or(0);
        legend_line(
            root,
            lx,
            y + 78,
            &NODES,
            true,
            &format!("nodes (right scale; at most {peak_nodes})"),
        )?;
        y += PANEL_B as i32;
        // Strip: failed EC2 calls per bucket, by kind.
        let buckets: Vec<(f64, f64, [u64; 3])> = rows
            .windows(2)
            .map(|w| {
                let d = |f: fn(&SampleRow) -> u64| f(w[1]) - f(w[0]);
                (
                    t(w[0]),
                    t(w[1]),
                    [
                        d(|x| x.insufficient_cidr_blocks),
                        d(|x| x.insufficient_free_addresses),
                        d(|x| x.invalid_parameter_value),
                    ],
                )
            })
            .collect();
        let fmax = buckets
            .iter()
            .map(|b| b.2.iter().sum::<u64>())
            .max()
            .unwrap_or(0)
            .max(1) as f64
            * 1.1;
        let area = root.clone().shrink((0, y), (W - LEGEND_W, STRIP));
        let mut ch = s(ChartBuilder::on(&area)
            .margin_right(10)
            .margin_top(8)
            .x_label_area_size(44)
            .y_label_area_size(Y_LABELS)
            .right_y_label_area_size(Y_RIGHT)
            .build_cartesian_2d(0f64..xmax, 0f64..fmax))?;
        s(ch.configure_mesh()
            .x_desc(format!("time ({unit_name})"))
            .y_desc("failed")
            .y_labels(3)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&int_label)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(GRID)
            .draw())?;
        shade_warmup(&mut ch, warm, fmax)?;
        let mut kinds_seen = [false; 3];
        for &(a, b, counts) in &buckets {
            let mut base = 0.0;
            for (k, &n) in counts.iter().enumerate() {
                if n > 0 {
                    kinds_seen[k] = true;
                    let top = base + n as f64;
                    s(ch.draw_series([Rectangle::new([(a, base), (b, top)], FAIL[k].0.filled())]))?;
                    base = top;
                }
            }
        }
        let bucket = rows
            .windows(2)
            .next()
            .map(|w| w[1].time - w[0].time)
            .unwrap_or(Ms::ZERO);
        text(
            root,
            &format!("failed EC2 calls per {bucket}"),
            (lx, y + 8),
            15,
            &BLACK,
        )?;
        let mut ly = y + 30;
        if !kinds_seen.contains(&true) {
            text(root, "none", (lx + 40, ly), 14, &PENDING)?;
        }
        for (k, (color, name)) in FAIL.iter().enumerate() {
            if kinds_seen[k] {
                let total = rows.last().map_or(0, |x| match k {
                    0 => x.insufficient_cidr_blocks,
                    1 => x.insufficient_free_addresses,
                    _ => x.invalid_parameter_value,
                });
                legend_box(root, lx, ly, color, &format!("{name} ({})", num(total)))?;
                ly += 22;
            }
        }
        y += STRIP as i32 + 24;
    }
    Ok(())
}

pub(crate) fn legend_line<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x: i32,
    y: i32,
    color: &RGBColor,
    dashed: bool,
    label: &str,
) -> Res<()> {
    if dashed {
        for k in 0..3 {
            s(root.draw(&PathElement::new(
                vec![(x + k * 11, y), (x + k * 11 + 7, y)],
                color.stroke_width(3),
            )))?;
        }
    } else {
        s(root.draw(&PathElement::new(
            vec![(x, y), (x + 30, y)],
            color.stroke_width(3),
        )))?;
    }
    text(root, label, (x + 40, y - 8), 15, &BLACK)
}

pub(crate) fn legend_box<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x: i32,
    y: i32,
    color: &RGBColor,
    label: &str,
) -> Res<()> {
    s(root.draw(&Rectangle::new(
        [(x, y - 7), (x + 30, y + 7)],
        color.filled(),
    )))?;
    s(root.draw(&Rectangle::new(
        [(x, y - 7), (x + 30, y + 7)],
        RGBColor(150, 150, 150).stroke_width(1),
    )))?;
    text(root, label, (x + 40, y - 8), 15, &BLACK)
}

// ---- subnet-map ----

/// Colour and letter of what holds an address.
pub fn holder_style(h: Holder) -> (RGBColor, &'static str, &'static str) {
    match h {
        Holder::NodePrimary => (RGBColor(31, 60, 140), "N", "node primary address"),
        Holder::EniPrimary => (RGBColor(100, 150, 215), "E", "other ENI primary"),
        Holder::PrefixInUse => (RGBColor(44, 150, 44), "P", "prefix with pods"),
        Holder::PrefixUnused => (RGBColor(175, 222, 160), "u", "prefix, no pod"),
        Holder::SecondaryIp => (RGBColor(120, 195, 185), "S", "secondary IP (pods)"),
        Holder::LoadBalancer => (RGBColor(235, 125, 25), "L", "load balancer"),
        Holder::Lambda => (RGBColor(150, 100, 190), "λ", "Lambda"),
        Holder::Endpoint => (RGBColor(140, 86, 75), "V", "VPC endpoint"),
        Holder::ControlPlane => (RGBColor(225, 185, 40), "C", "EKS control plane"),
        Holder::Other => (RGBColor(130, 130, 130), "O", "other"),
        Holder::AwsReserved => (RGBColor(55, 55, 55), "R", "AWS-reserved"),
        Holder::Free => (WHITE, "", "free"),
    }
}

/// Colour, letter and name of an analyzer block class.
pub fn block_style(c: BlockClass) -> (RGBColor, &'static str, &'static str) {
    match c {
        BlockClass::PrefixAllocated => (RGBColor(44, 150, 44), "P", "prefix allocated"),
        BlockClass::HasReserved => (RGBColor(55, 55, 55), "R", "has AWS-reserved"),
        BlockClass::Free => (WHITE, "", "free (delegatable)"),
        BlockClass::Full => (RGBColor(200, 40, 40), "F", "full"),
        BlockClass::Fragmented => (RGBColor(245, 170, 60), "x", "fragmented"),
    }
}

fn dark(c: &RGBColor) -> bool {
    (c.0 as u32 * 299 + c.1 as u32 * 587 + c.2 as u32 * 114) / 1000 < 110
}

/// Map geometry for a snapshot: (columns, cell size, rows).
pub(crate) fn map_geometry(snap: &Snapshot) -> (usize, i32, usize) {
    let n = if snap.holders.is_empty() {
        snap.classes.len()
    } else {
        snap.holders.len()
    };
    // Address maps: a row per /28. Block maps: near square.
    let cols = if !snap.holders.is_empty() || n <= 256 {
        16
    } else if n <= 1024 {
        32
    } else {
        64
    };
    let rows = n.div_ceil(cols);
    let cell = (720 / rows.max(1) as i32).clamp(if snap.holders.is_empty() { 6 } else { 12 }, 22);
    (cols, cell, rows)
}

const MAP_LEGEND_W: i32 = 300;

fn subnet_map_size(r: &RunResult) -> (u32, u32) {
    let head = 58 + 22 * wrap(&r.subtitle, 150).len() as u32 + 8;
    let mut h = head;
    let mut w = 1200u32;
    for snap in &r.worst {
        let (cols, cell, rows) = map_geometry(snap);
        h += 90 + (rows as i32 * cell).max(12 * 22) as u32;
        w = w.max(2 * (cols as i32 * cell + 80) as u32 + MAP_LEGEND_W as u32 + 40);
    }
    (w, h)
}

/// `subnet-map.png` and `subnet-map.svg`.
pub fn subnet_map(r: &RunResult) -> Result<(Vec<u8>, Vec<u8>), OutputError> {
    render(
        "subnet-map",
        subnet_map_size(r),
        &|root| draw_subnet_map(root, r),
        &|root| draw_subnet_map(root, r),
    )
}

fn draw_subnet_map<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &RunResult) -> Res<()> {
    let what = if r.worst.iter().all(|w| !w.holders.is_empty()) {
        "what holds each address, at the worst moment and at the end"
    } else {
        "the subnets' /28 blocks at the worst moment and at the end"
    };
    let mut y = header(root, r, what)?;
    for si in 0..r.subnets.len() {
        text(root, &subnet_caption(r, si), (20, y + 6), 18, &BLACK)?;
        let (worst, end) = (&r.worst[si], &r.end[si]);
        let (cols, cell, rows) = map_geometry(worst);
        let map_w = cols as i32 * cell;
        let worst_label = if r.warmup > Ms::ZERO {
            "worst after warm-up"
        } else {
            "worst"
        };
        let mut present_h = std::collections::BTreeSet::new();
        let mut present_b = std::collections::BTreeSet::new();
        for (k, (snap, label)) in [(worst, worst_label), (end, "end")].into_iter().enumerate() {
            let x0 = 30 + k as i32 * (map_w + 80);
            let why = if snap.at_failure {
                ", first InsufficientCidrBlocks"
            } else {
                ""
            };
            text(
                root,
                &format!("{label}: {}{why}", clock(snap.time)),
                (x0, y + 36),
                15,
                &BLACK,
            )?;
            text(
                root,
                &format!(
                    "{} delegatable /28s, {} free addresses",
                    snap.delegatable,
                    num(snap.free_ips as u64)
                ),
                (x0, y + 56),
                14,
                &RGBColor(70, 70, 70),
            )?;
            draw_map(root, snap, x0, y + 80, cols, cell)?;
            present_h.extend(snap.holders.iter().copied());
            if snap.holders.is_empty() {
                present_b.extend(snap.classes.iter().copied());
            }
        }
        // Legend: only what is present.
        let lx = 30 + 2 * (map_w + 80);
        let mut ly = y + 86;
        let any_res = worst
            .in_reservation
            .iter()
            .chain(&end.in_reservation)
            .any(|&b| b);
        // Block classes: drawn with the pattern the map uses when its cells
        // are too small for letters.
        let entries: Vec<(RGBColor, &str, &str, Option<BlockClass>)> = if worst.holders.is_empty() {
            [
                BlockClass::PrefixAllocated,
                BlockClass::Fragmented,
                BlockClass::Full,
                BlockClass::Free,
                BlockClass::HasReserved,
            ]
            .into_iter()
            .filter(|c| present_b.contains(c))
            .map(|c| {
                let (color, letter, name) = block_style(c);
                (color, letter, name, (cell < 12).then_some(c))
            })
            .collect()
        } else {
            Holder::ALL
                .into_iter()
                .filter(|h| present_h.contains(h))
                .map(|h| {
                    let (color, letter, name) = holder_style(h);
                    (color, letter, name, None)
                })
                .collect()
        };
        text(
            root,
            if worst.holders.is_empty() {
                "each cell a /28 block:"
            } else {
                "each row a /28, each cell an address:"
            },
            (lx, ly - 6),
            14,
            &BLACK,
        )?;
        ly += 22;
        for (color, letter, name, patterned) in entries {
            cell_at(root, lx, ly, 18, &color, letter, patterned.is_none())?;
            if let Some(c) = patterned {
                pattern(root, c, lx, ly, 18)?;
            }
            text(root, name, (lx + 28, ly + 1), 15, &BLACK)?;
            ly += 24;
        }
        if any_res {
            s(root.draw(&Rectangle::new(
                [(lx, ly), (lx + 18, ly + 18)],
                RESERVATION.stroke_width(3),
            )))?;
            text(
                root,
                "in a CIDR reservation (outlined)",
                (lx + 28, ly + 1),
                15,
                &BLACK,
            )?;
        }
        y += 90 + (rows as i32 * cell).max(12 * 22);
    }
    Ok(())
}

const RESERVATION: RGBColor = RGBColor(200, 0, 120);

/// One cell with its colour, a border and its letter.
pub(crate) fn cell_at<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x: i32,
    y: i32,
    c: i32,
    color: &RGBColor,
    letter: &str,
    with_letter: bool,
) -> Res<()> {
    s(root.draw(&Rectangle::new([(x, y), (x + c, y + c)], color.filled())))?;
    s(root.draw(&Rectangle::new(
        [(x, y), (x + c, y + c)],
        RGBColor(200, 200, 200).stroke_width(1),
    )))?;
    if with_letter && !letter.is_empty() {
        let fg = if dark(color) { WHITE } else { BLACK };
        let size = (c * 3 / 4).max(8) as u32;
        text(
            root,
            letter,
            (x + c / 2 - size as i32 / 4 - 1, y + (c - size as i32) / 2),
            size,
            &fg,
        )?;
    }
    Ok(())
}

pub(crate) fn draw_map<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    snap: &Snapshot,
    x0: i32,
    y0: i32,
    cols: usize,
    c: i32,
) -> Res<()> {
    let letters = c >= 12;
    if snap.holders.is_empty() {
        for (b, &class) in snap.classes.iter().enumerate() {
            let (x, y) = (x0 + (b % cols) as i32 * c, y0 + (b / cols) as i32 * c);
            let (color, letter, _) = block_style(class);
            cell_at(root, x, y, c, &color, letter, letters)?;
            if !letters {
                pattern(root, class, x, y, c)?;
            }
        }
    } else {
        for (a, &h) in snap.holders.iter().enumerate() {
            let (x, y) = (x0 + (a % cols) as i32 * c, y0 + (a / cols) as i32 * c);
            let (color, letter, _) = holder_style(h);
            cell_at(root, x, y, c, &color, letter, letters)?;
        }
    }
    // Reservations: each reserved /28 outlined.
    let per_block = if snap.holders.is_empty() { 1 } else { 16 };
    for (b, _) in snap.in_reservation.iter().enumerate().filter(|(_, &r)| r) {
        let first = b * per_block;
        let (x, y) = (
            x0 + (first % cols) as i32 * c,
            y0 + (first / cols) as i32 * c,
        );
        let w = per_block.min(cols) as i32 * c;
        s(root.draw(&Rectangle::new(
            [(x, y), (x + w, y + c)],
            RESERVATION.stroke_width(2),
        )))?;
    }
    Ok(())
}

/// A greyscale-safe mark for block classes in cells too small for letters.
fn pattern<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    class: BlockClass,
    x: i32,
    y: i32,
    c: i32,
) -> Res<()> {
    let ink = BLACK.stroke_width(1);
    match class {
        BlockClass::Fragmented => {
            s(root.draw(&PathElement::new(vec![(x, y + c), (x + c, y)], ink)))
        }
        BlockClass::Full => {
            s(root.draw(&PathElement::new(vec![(x, y), (x + c, y + c)], ink)))?;
            s(root.draw(&PathElement::new(vec![(x, y + c), (x + c, y)], ink)))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_rise_or_fall_and_join_up() {
        let pts: Vec<(f64, f64)> = [0., 1., 3., 3., 2., 0., 0., 5., 4.]
            .iter()
            .enumerate()
            .map(|(i, &y)| (i as f64, y))
            .collect();
        let runs = monotone_runs(&pts);
        let ys: Vec<Vec<f64>> = runs
            .iter()
            .map(|r| r.iter().map(|p| p.1).collect())
            .collect();
        assert_eq!(
            ys,
            [
                vec![0., 1., 3., 3.],
                vec![3., 2., 0., 0.],
                vec![0., 5.],
                vec![5., 4.]
            ]
        );
        for w in runs.windows(2) {
            assert_eq!(w[0].last(), w[1].first(), "runs share their turn");
        }
        assert!(monotone_runs(&pts[..1]).is_empty());
    }

    /// Pixels of `color` below the chart that `draw` fills: a zigzag of
    /// 3,000 samples between 0 and 10 on a chart in the top half of a
    /// 600 x 400 image, as a day's samples in one pixel column.
    fn below_chart(
        draw: impl Fn(
            &mut ChartContext<BitMapBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
            &[(f64, f64)],
        ),
    ) -> usize {
        let (w, h) = (600u32, 400u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            let (top, _) = root.split_vertically(200);
            let mut ch = ChartBuilder::on(&top)
                .build_cartesian_2d(0f64..3000.0, 0f64..10.0)
                .unwrap();
            let pts: Vec<(f64, f64)> = (0..3000)
                .map(|i| {
                    (
                        i as f64,
                        if i % 2 == 0 {
                            0.0
                        } else {
                            10.0 * ((i % 7) as f64 / 6.0)
                        },
                    )
                })
                .collect();
            draw(&mut ch, &pts);
            root.present().unwrap();
        }
        buf.chunks(3)
            .enumerate()
            .filter(|(i, px)| *i as u32 / w >= 210 && px[2] > 150 && px[0] < 100)
            .count()
    }

    /// plotters' own thick line strokes far below its chart where a line
    /// turns back (the artefact); drawn in runs, nothing leaves the chart.
    #[test]
    fn thick_lines_stay_in_their_chart() {
        let style = BLUE.stroke_width(3);
        let plain = below_chart(|ch, pts| {
            ch.draw_series(LineSeries::new(pts.to_vec(), style))
                .unwrap();
        });
        assert!(plain > 0, "plotters' artefact is gone: {plain}");
        assert_eq!(below_chart(|ch, pts| line(ch, pts, style).unwrap()), 0);
        assert_eq!(
            below_chart(|ch, pts| dashed_line(ch, pts, (8, 5), style).unwrap()),
            0
        );
    }
}
