//! The two charts, rendered in memory with plotters and an embedded font
//! (DejaVu Sans) so they need no system fonts.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::OutputError;
use crate::addr::BlockClass;
use crate::sim::observe::{RunResult, Snapshot};
use crate::time::Ms;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn init_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| ())
            .expect("embedded font is valid");
    });
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 120, 20);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const WAIT: RGBColor = RGBColor(148, 103, 189);

fn chart_err(path: &str) -> impl Fn(String) -> OutputError + '_ {
    move |message| OutputError::Chart {
        path: path.into(),
        message,
    }
}

/// PNG bytes of an RGB buffer.
fn encode_png(buf: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let enc = image::codecs::png::PngEncoder::new(&mut out);
        image::ImageEncoder::write_image(enc, buf, w, h, image::ColorType::Rgb8)
            .map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Time unit for an axis covering `span`.
fn time_unit(span: Ms) -> (f64, &'static str) {
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
fn tick(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// `h:mm:ss` (with milliseconds when not whole).
fn clock(t: Ms) -> String {
    let ms = t.as_millis();
    let s = ms / 1000;
    let base = format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if ms.is_multiple_of(1000) {
        base
    } else {
        format!("{base}.{:03}", ms % 1000)
    }
}

/// `free-ips.png`: per subnet, free addresses (left axis) and delegatable
/// /28 blocks (right axis) over time, every `InsufficientCidrBlocks` marked.
pub fn free_ips_png(r: &RunResult) -> Result<Vec<u8>, OutputError> {
    init_font();
    let e = chart_err("free-ips.png");
    let n = r.subnets.len().max(1) as u32;
    let (w, panel_h, top) = (1400u32, 380u32, 70u32);
    let h = top + panel_h * n;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let title = format!(
            "{}  (seed {}): free addresses and delegatable /28 blocks",
            r.summary.scenario, r.summary.seed
        );
        root.draw(&Text::new(
            title,
            (20, 18),
            ("sans-serif", 26).into_font().color(&BLACK),
        ))
        .map_err(|x| e(x.to_string()))?;
        let body = root.margin(top as i32, 0, 0, 0);
        let panels = body.split_evenly((n as usize, 1));
        let dur = r.summary.simulated_duration.max(Ms(1));
        let (unit, unit_name) = time_unit(dur);
        let xmax = dur.as_millis() as f64 / unit;
        for (i, area) in panels.iter().enumerate() {
            draw_panel(area, r, i, unit, unit_name, xmax).map_err(&e)?;
        }
        root.present().map_err(|x| e(x.to_string()))?;
    }
    encode_png(&buf, w, h).map_err(e)
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    r: &RunResult,
    si: usize,
    unit: f64,
    unit_name: &str,
    xmax: f64,
) -> Result<(), String> {
    let info = &r.subnets[si];
    let rows: Vec<_> = r
        .chart_samples
        .iter()
        .filter(|s| s.subnet == info.name)
        .collect();
    let total_ips = {
        let net: ipnet::Ipv4Net = info.cidr.parse().map_err(|_| "cidr".to_string())?;
        (1u64 << (32 - net.prefix_len())) - 5
    };
    let total_blocks = (total_ips + 5) / 16;
    // InsufficientCidrBlocks per sample interval, from the cumulative
    // counts of the time series: (interval start, interval end, count).
    let fails: Vec<(f64, f64, u64)> = rows
        .windows(2)
        .filter_map(|w| {
            let n = w[1].insufficient_cidr_blocks - w[0].insufficient_cidr_blocks;
            (n > 0).then(|| {
                (
                    w[0].time.as_millis() as f64 / unit,
                    w[1].time.as_millis() as f64 / unit,
                    n,
                )
            })
        })
        .collect();
    let fail_total: u64 = rows.last().map_or(0, |s| s.insufficient_cidr_blocks);
    let fail_peak = fails.iter().map(|f| f.2).max().unwrap_or(0);
    let ymax_ips = (rows.iter().map(|s| s.free_ips as u64).max().unwrap_or(0))
        .max(total_ips / 2)
        .max(1) as f64
        * 1.05;
    let ymax_blocks = (total_blocks.saturating_sub(2)).max(1) as f64 * 1.05;
    let caption = format!(
        "{} {} ({})  —  {} InsufficientCidrBlocks",
        info.name, info.cidr, info.zone, fail_total
    );
    let mut chart = ChartBuilder::on(&area.margin(6, 10, 10, 10))
        .caption(caption, ("sans-serif", 20))
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax.max(1e-9), 0f64..ymax_ips)
        .map_err(|x| x.to_string())?
        .set_secondary_coord(0f64..xmax.max(1e-9), 0f64..ymax_blocks);
    chart
        .configure_mesh()
        .x_desc(format!("time ({unit_name})"))
        .y_desc("free addresses, pods waiting")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|x| x.to_string())?;
    chart
        .configure_secondary_axes()
        .y_desc("delegatable /28 blocks")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|x| x.to_string())?;
    // Drawn first, under the lines. Failures as a strip of bars along the bottom, one per sample interval,
    // height by count (up to 5% of the block axis at the interval with the
    // most), so failures every 5 s on many nodes stay readable.
    let strip = ymax_blocks * 0.05;
    let bars = fails.iter().map(|&(a, b, n)| {
        let h = strip * (n as f64 / fail_peak.max(1) as f64).max(0.15);
        Rectangle::new([(a, 0.0), (b, h)], FAIL.mix(0.55).filled())
    });
    chart
        .draw_secondary_series(bars)
        .map_err(|x| x.to_string())?
        .label(format!(
            "InsufficientCidrBlocks per interval (bars, max {fail_peak})"
        ))
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 24, y + 5)], FAIL.filled()));
    let pts_ips: Vec<(f64, f64)> = rows
        .iter()
        .map(|s| (s.time.as_millis() as f64 / unit, s.free_ips as f64))
        .collect();
    let pts_blocks: Vec<(f64, f64)> = rows
        .iter()
        .map(|s| {
            (
                s.time.as_millis() as f64 / unit,
                s.delegatable_blocks as f64,
            )
        })
        .collect();
    chart
        .draw_series(LineSeries::new(pts_ips, BLUE.stroke_width(3)))
        .map_err(|x| x.to_string())?
        .label("free addresses (left)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLUE.stroke_width(3)));
    chart
        .draw_secondary_series(LineSeries::new(pts_blocks, ORANGE.stroke_width(3)))
        .map_err(|x| x.to_string())?
        .label("delegatable /28 blocks (right)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], ORANGE.stroke_width(3)));
    let pts_wait: Vec<(f64, f64)> = rows
        .iter()
        .map(|s| (s.time.as_millis() as f64 / unit, s.pods_waiting_ip as f64))
        .collect();
    chart
        .draw_series(LineSeries::new(pts_wait, WAIT.stroke_width(2)))
        .map_err(|x| x.to_string())?
        .label("pods waiting for an address (left)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], WAIT.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|x| x.to_string())?;
    Ok(())
}

/// Colour of a block in the map, by class (the analyzer's classes).
pub fn block_colour(class: BlockClass, in_reservation: bool) -> RGBColor {
    match (class, in_reservation) {
        (BlockClass::Free, true) => RGBColor(120, 200, 190),
        (BlockClass::Free, false) => RGBColor(190, 230, 170),
        (BlockClass::Fragmented, _) => RGBColor(245, 160, 50),
        (BlockClass::Full, _) => RGBColor(200, 40, 40),
        (BlockClass::PrefixAllocated, _) => RGBColor(70, 110, 190),
        (BlockClass::HasReserved, _) => RGBColor(150, 150, 150),
    }
}

const LEGEND: [(&str, BlockClass, bool); 6] = [
    ("free", BlockClass::Free, false),
    ("free, in reservation (P)", BlockClass::Free, true),
    ("prefix allocated (A)", BlockClass::PrefixAllocated, false),
    ("fragmented", BlockClass::Fragmented, false),
    ("full", BlockClass::Full, false),
    ("has AWS-reserved (R)", BlockClass::HasReserved, false),
];

/// `subnet-map.png`: each subnet's /28 blocks at its worst moment and at the
/// end, side by side.
pub fn subnet_map_png(r: &RunResult) -> Result<Vec<u8>, OutputError> {
    init_font();
    let e = chart_err("subnet-map.png");
    let map_w = 600u32;
    let cols_for = |n: usize| if n <= 256 { 16 } else { 64 };
    let cell_for = |n: usize| (map_w / cols_for(n) as u32).min(32);
    let heights: Vec<u32> = r
        .worst
        .iter()
        .map(|s| {
            let n = s.classes.len();
            let rows = n.div_ceil(cols_for(n)) as u32;
            rows * cell_for(n) + 70
        })
        .collect();
    let (w, top, legend_h) = (2 * map_w + 120, 60u32, 60u32);
    let h = top + heights.iter().sum::<u32>() + legend_h;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let title = format!(
            "{}  (seed {}): /28 block maps",
            r.summary.scenario, r.summary.seed
        );
        root.draw(&Text::new(
            title,
            (20, 16),
            ("sans-serif", 26).into_font().color(&BLACK),
        ))
        .map_err(|x| e(x.to_string()))?;
        let mut y = top as i32;
        for (i, info) in r.subnets.iter().enumerate() {
            for (k, (snap, label)) in [(&r.worst[i], "worst"), (&r.end[i], "end")]
                .into_iter()
                .enumerate()
            {
                let x0 = 40 + k as i32 * (map_w as i32 + 40);
                let head = format!(
                    "{} {} at {} ({}): {} delegatable, {} free addresses",
                    info.name,
                    info.cidr,
                    label,
                    clock(snap.time),
                    snap.delegatable,
                    snap.free_ips
                );
                root.draw(&Text::new(
                    head,
                    (x0, y + 10),
                    ("sans-serif", 16).into_font().color(&BLACK),
                ))
                .map_err(|x| e(x.to_string()))?;
                draw_map(
                    &root,
                    snap,
                    x0,
                    y + 36,
                    cols_for(snap.classes.len()),
                    cell_for(snap.classes.len()),
                )
                .map_err(&e)?;
            }
            y += heights[i] as i32;
        }
        // Legend.
        let mut x = 40;
        for (name, class, res) in LEGEND {
            root.draw(&Rectangle::new(
                [(x, y + 14), (x + 18, y + 32)],
                block_colour(class, res).filled(),
            ))
            .map_err(|x| e(x.to_string()))?;
            root.draw(&Text::new(
                name,
                (x + 24, y + 16),
                ("sans-serif", 15).into_font().color(&BLACK),
            ))
            .map_err(|x| e(x.to_string()))?;
            x += 34 + 9 * name.len() as i32;
        }
        root.present().map_err(|x| e(x.to_string()))?;
    }
    encode_png(&buf, w, h).map_err(e)
}

fn draw_map(
    root: &DrawingArea<BitMapBackend, Shift>,
    snap: &Snapshot,
    x0: i32,
    y0: i32,
    cols: usize,
    cell: u32,
) -> Result<(), String> {
    let c = cell as i32;
    let gap = if c >= 6 { 1 } else { 0 };
    for (b, (&class, &res)) in snap.classes.iter().zip(&snap.in_reservation).enumerate() {
        let (row, col) = ((b / cols) as i32, (b % cols) as i32);
        let (x, y) = (x0 + col * c, y0 + row * c);
        root.draw(&Rectangle::new(
            [(x, y), (x + c - gap, y + c - gap)],
            block_colour(class, res).filled(),
        ))
        .map_err(|x| x.to_string())?;
    }
    Ok(())
}
