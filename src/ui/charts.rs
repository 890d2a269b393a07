//! Charts as inline SVG, drawn here: lines (entities per kind over the
//! snapshots), bars (bytes each snapshot stored) and a heat map (changed
//! entities per kind per snapshot). Snapshots are evenly spaced columns,
//! oldest on the left, so the three charts line up. Each column carries a
//! `<title>`, which browsers show on hover without any script.

use maud::{html, Markup, PreEscaped};

/// The colours of the kinds, in order.
pub const PALETTE: [&str; 10] = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#475569", "#ea580c",
];

const WIDTH: f64 = 960.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One line of a chart, or one row of the heat map.
pub struct Series {
    pub label: String,
    pub values: Vec<u64>,
}

/// The horizontal layout: `n` columns across the plot.
struct Columns {
    n: usize,
}

impl Columns {
    fn width(&self) -> f64 {
        (WIDTH - LEFT - RIGHT) / self.n.max(1) as f64
    }
    /// The middle of column `i`.
    fn x(&self, i: usize) -> f64 {
        LEFT + (i as f64 + 0.5) * self.width()
    }
    /// Up to six evenly spread columns to label, first and last included.
    fn ticks(&self) -> Vec<usize> {
        if self.n == 0 {
            return Vec::new();
        }
        let want = self.n.min(6);
        let mut t: Vec<usize> = (0..want)
            .map(|k| {
                if want == 1 {
                    0
                } else {
                    k * (self.n - 1) / (want - 1)
                }
            })
            .collect();
        t.dedup();
        t
    }
}

/// The smallest of 1, 2, 5 × 10^k at or above `max` (at least 1).
pub fn nice_max(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let v = step.saturating_mul(m);
            if v >= max || v == u64::MAX {
                return v;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The vertical scale of a chart `height` high whose top is `top_value`.
fn y(value: f64, top_value: u64, height: f64) -> f64 {
    let plot = height - TOP - BOTTOM;
    TOP + plot - plot * (value / top_value.max(1) as f64)
}

/// Grid lines and labels on the left: 0, ¼, ½, ¾ and the top (a line
/// whose value is not a whole number goes unlabelled).
fn y_axis(top_value: u64, height: f64, label: &dyn Fn(u64) -> String) -> Markup {
    html! {
        @for k in 0..=4u32 {
            @let v = top_value as f64 * f64::from(k) / 4.0;
            @let yy = y(v, top_value, height);
            line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(yy)) y2=(fmt(yy)) {}
            @if v.fract() == 0.0 {
                text.axis x=(LEFT - 6.0) y=(fmt(yy + 4.0)) text-anchor="end" { (label(v as u64)) }
            }
        }
    }
}

/// Dates under the ticked columns.
fn x_axis(cols: &Columns, labels: &[String], height: f64) -> Markup {
    let ticks = cols.ticks();
    let last = ticks.len().saturating_sub(1);
    // The outer labels are anchored inwards so that they are not cut.
    let anchor = |k: usize| match k {
        0 if last > 0 => "start",
        k if k == last && last > 0 => "end",
        _ => "middle",
    };
    let x = |k: usize, i: usize| match anchor(k) {
        "start" => LEFT,
        "end" => WIDTH - RIGHT,
        _ => cols.x(i),
    };
    html! {
        @for (k, i) in ticks.iter().copied().enumerate() {
            text.axis x=(fmt(x(k, i))) y=(fmt(height - 8.0)) text-anchor=(anchor(k)) {
                (labels.get(i).map(String::as_str).unwrap_or(""))
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// Hover targets: one transparent column per snapshot with its title.
fn hover(cols: &Columns, titles: &[String], height: f64) -> Markup {
    let w = fmt(cols.width());
    let h = fmt(height - TOP - BOTTOM);
    html! {
        @for (i, t) in titles.iter().enumerate() {
            rect.hover x=(fmt(LEFT + i as f64 * cols.width())) y=(TOP) width=(w) height=(h) {
                title { (t) }
            }
        }
    }
}

/// One line per series; `labels` under the columns, `titles` on hover.
pub fn lines(series: &[Series], labels: &[String], titles: &[String]) -> Markup {
    let height = 260.0;
    let cols = Columns { n: labels.len() };
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0);
    let top = nice_max(max);
    html! {
        svg.chart viewBox={"0 0 " (WIDTH) " " (height)} role="img" aria-label="entities per kind" {
            (y_axis(top, height, &|v| v.to_string()))
            @for (k, s) in series.iter().enumerate() {
                @let pts: Vec<String> = s.values.iter().enumerate()
                    .map(|(i, v)| format!("{},{}", fmt(cols.x(i)), fmt(y(*v as f64, top, height))))
                    .collect();
                @let colour = PALETTE[k % PALETTE.len()];
                @if pts.len() == 1 {
                    circle cx=(fmt(cols.x(0))) cy=(fmt(y(s.values[0] as f64, top, height))) r="3" fill=(colour) {}
                } @else {
                    polyline points=(pts.join(" ")) fill="none" stroke=(colour) stroke-width="2" {}
                }
            }
            (x_axis(&cols, labels, height))
            (hover(&cols, titles, height))
        }
    }
}

/// One bar per column, its height `values[i]`, axis labels by `label`.
pub fn bars(
    values: &[u64],
    labels: &[String],
    titles: &[String],
    label: &dyn Fn(u64) -> String,
) -> Markup {
    let height = 200.0;
    let cols = Columns { n: values.len() };
    let top = nice_max(values.iter().copied().max().unwrap_or(0));
    let gap = if cols.width() > 4.0 { 1.0 } else { 0.0 };
    html! {
        svg.chart viewBox={"0 0 " (WIDTH) " " (height)} role="img" aria-label="bytes stored per snapshot" {
            (y_axis(top, height, label))
            @for (i, v) in values.iter().enumerate() {
                @let yy = y(*v as f64, top, height);
                rect.bar x=(fmt(LEFT + i as f64 * cols.width() + gap / 2.0)) y=(fmt(yy))
                    width=(fmt((cols.width() - gap).max(0.5))) height=(fmt(height - BOTTOM - yy)) {}
            }
            (x_axis(&cols, labels, height))
            (hover(&cols, titles, height))
        }
    }
}

/// Rows of cells, darker for more; `tip(row, column)` is each cell's title.
pub fn heat(rows: &[Series], labels: &[String], tip: &dyn Fn(usize, usize) -> String) -> Markup {
    const ROW: f64 = 16.0;
    let height = TOP + ROW * rows.len() as f64 + BOTTOM;
    let cols = Columns { n: labels.len() };
    let max = rows
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0);
    let w = fmt(cols.width());
    html! {
        svg.chart viewBox={"0 0 " (WIDTH) " " (height)} role="img" aria-label="changed entities per kind per snapshot" {
            @for (r, s) in rows.iter().enumerate() {
                @let yy = TOP + r as f64 * ROW;
                text.axis x=(LEFT - 6.0) y=(fmt(yy + ROW - 4.0)) text-anchor="end" { (short_label(&s.label)) title { (s.label) } }
                rect.empty x=(LEFT) y=(fmt(yy)) width=(fmt(WIDTH - LEFT - RIGHT)) height=(fmt(ROW - 2.0)) {}
                @for (i, v) in s.values.iter().enumerate() {
                    @if *v > 0 {
                        rect x=(fmt(LEFT + i as f64 * cols.width())) y=(fmt(yy)) width=(w) height=(fmt(ROW - 2.0))
                            fill=(shade(*v, max)) { title { (tip(r, i)) } }
                    }
                }
            }
            (x_axis(&cols, labels, height))
        }
    }
}

/// Kind names longer than the margin are cut (the full one is the title).
fn short_label(s: &str) -> String {
    if s.chars().count() <= 11 {
        return s.to_string();
    }
    let cut: String = s.chars().take(10).collect();
    format!("{cut}…")
}

/// Pale to deep orange, on a log scale so one busy kind does not wash out
/// the rest.
pub fn shade(v: u64, max: u64) -> String {
    let t = if max <= 1 {
        1.0
    } else {
        ((1.0 + v as f64).ln() / (1.0 + max as f64).ln()).clamp(0.0, 1.0)
    };
    let mix = |a: f64, b: f64| (a + (b - a) * (0.15 + 0.85 * t)).round() as u8;
    // #fed7aa → #9a3412
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(254.0, 154.0),
        mix(215.0, 52.0),
        mix(170.0, 18.0)
    )
}

/// A swatch of colour `k` for a legend (an SVG square: the page's
/// policy forbids inline styles).
pub fn swatch(k: usize) -> Markup {
    html! {
        svg.swatch viewBox="0 0 10 10" width="10" height="10" {
            rect width="10" height="10" fill=(PALETTE[k % PALETTE.len()]) {}
        }
    }
}

/// A chart that would be empty.
pub fn none(what: &str) -> Markup {
    html! { p.muted { (PreEscaped("&mdash; ")) (what) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(101), 200);
        assert_eq!(nice_max(2_000_001), 5_000_000);
        assert_eq!(nice_max(u64::MAX), u64::MAX);
    }

    #[test]
    fn ticks_cover_first_and_last() {
        assert_eq!(Columns { n: 0 }.ticks(), Vec::<usize>::new());
        assert_eq!(Columns { n: 1 }.ticks(), vec![0]);
        assert_eq!(Columns { n: 3 }.ticks(), vec![0, 1, 2]);
        let t = Columns { n: 365 }.ticks();
        assert_eq!((t.len(), t[0], t[5]), (6, 0, 364));
    }

    #[test]
    fn scale_stays_inside_the_plot() {
        let h = 200.0;
        assert_eq!(y(0.0, 10, h), h - BOTTOM);
        assert_eq!(y(10.0, 10, h), TOP);
        assert!(y(5.0, 10, h) > TOP && y(5.0, 10, h) < h - BOTTOM);
    }

    #[test]
    fn shades_darken_with_more() {
        assert_eq!(shade(1, 1), "#9a3412");
        let (a, b) = (shade(1, 1000), shade(1000, 1000));
        assert_ne!(a, b);
        assert_eq!(b, "#9a3412");
    }

    #[test]
    fn lines_draw_one_polyline_per_series() {
        let s = vec![
            Series {
                label: "A".into(),
                values: vec![1, 2, 3],
            },
            Series {
                label: "B".into(),
                values: vec![3, 2, 1],
            },
        ];
        let labels: Vec<String> = ["d1", "d2", "d3"].map(String::from).to_vec();
        let svg = lines(&s, &labels, &labels).into_string();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(!svg.contains("NaN"));
    }
}
