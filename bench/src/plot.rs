//! Latency percentile plots as a standalone SVG document, for `meshbench
//! plot`: the way HdrHistogram's plotter draws a distribution, percentile
//! across on a log scale of 1/(1 − p) (one decade per "nine": 90%, 99%,
//! 99.9%, ...), latency in milliseconds up, one curve per run.
//!
//! [`render_svg`] is a pure function of its input: no I/O, no clock, no
//! randomness, and every number is written with fixed precision, so the same
//! series always give byte-identical output and the format is unit-tested on
//! fixed numbers. Reading the JSON files and writing the SVG are the caller's.
//!
//! It never panics, on any input. Points whose percentile or latency is NaN,
//! infinite or negative are skipped; percentiles at or above 99.9999
//! (p = 100 included) are drawn at 99.9999, the last tick. An empty series
//! list, series without points and all-zero latencies still give a valid
//! chart. Labels and the title are escaped for XML.

use std::fmt::Write as _;

/// One run's latency distribution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Legend text, e.g. the file name of the run.
    pub label: String,
    /// (percentile in 0..=100, latency in milliseconds), ascending
    /// percentile, e.g. from an HDR histogram's percentile iteration.
    pub points: Vec<(f64, f64)>,
}

/// Size of the document, in SVG user units (pixels).
const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 500.0;
/// Margins around the plot area: room for the title, labels and axis titles.
const LEFT: f64 = 80.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// The highest percentile drawn; anything above is drawn here.
const MAX_PERCENTILE: f64 = 99.9999;
/// Tick labels, one per decade of 1/(1 − p): the n-th has n nines.
const TICKS: [&str; 7] = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
/// Decades of the widest x axis (the nines of [`MAX_PERCENTILE`]).
const MAX_DECADES: usize = TICKS.len() - 1;
/// Divisions of the y axis: 6 gridlines, 0 included.
const Y_DIVISIONS: usize = 5;
/// Series colours (matplotlib's tab10), cycled after the tenth series.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Renders the percentile curves of all series into one SVG document (a
/// String starting with `<svg` and ending with `</svg>`, no trailing newline).
pub fn render_svg(series: &[Series], title: &str) -> String {
    let curves: Vec<Vec<(f64, f64)>> = series.iter().map(|s| clean(&s.points)).collect();
    let points = curves.iter().flatten();
    let reach = points.clone().map(|&(p, _)| nines(p)).fold(0.0, f64::max);
    let decades = decades(reach);
    let y_max = nice_max(points.map(|&(_, ms)| ms).fold(0.0, f64::max));

    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{:.2}\" y=\"30.00\" text-anchor=\"middle\" font-size=\"18\">{}</text>\n",
        WIDTH / 2.0,
        escape(title),
    );
    x_axis(&mut svg, decades);
    y_axis(&mut svg, y_max);
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT:.2}\" y=\"{TOP:.2}\" width=\"{PLOT_W:.2}\" height=\"{PLOT_H:.2}\" \
         fill=\"none\" stroke=\"#333\"/>"
    );

    for (i, curve) in curves.iter().enumerate() {
        if curve.is_empty() {
            continue;
        }
        let colour = PALETTE[i % PALETTE.len()];
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" \
             stroke-linejoin=\"round\" points=\""
        );
        for (j, &(p, ms)) in curve.iter().enumerate() {
            let sep = if j == 0 { "" } else { " " };
            let _ = write!(svg, "{sep}{:.2},{:.2}", x_of(p, decades), y_of(ms, y_max));
        }
        svg.push_str("\"/>\n");
        // A lone point draws no line; mark it so the run stays visible.
        if let [(p, ms)] = curve[..] {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"3\" fill=\"{colour}\"/>",
                x_of(p, decades),
                y_of(ms, y_max)
            );
        }
    }
    if curves.iter().all(Vec::is_empty) {
        let _ = writeln!(
            svg,
            "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\" fill=\"#777\">no data</text>",
            LEFT + PLOT_W / 2.0,
            TOP + PLOT_H / 2.0
        );
    }
    legend(&mut svg, series, &curves);
    svg.push_str("</svg>");
    svg
}

/// The plottable points of a series: NaN, infinite and negative values
/// dropped, percentiles capped at [`MAX_PERCENTILE`], sorted by percentile.
fn clean(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut kept: Vec<(f64, f64)> = points
        .iter()
        .filter(|(p, ms)| p.is_finite() && ms.is_finite() && *p >= 0.0 && *ms >= 0.0)
        .map(|&(p, ms)| (p.min(MAX_PERCENTILE), ms))
        .collect();
    kept.sort_by(|a, b| a.0.total_cmp(&b.0));
    kept
}

/// How many nines percentile `p` has: log10(1 / (1 − p/100)), so 0 at 0%,
/// 1 at 90%, 3 at 99.9%; within 0..=[`MAX_DECADES`].
fn nines(p: f64) -> f64 {
    let p = p.clamp(0.0, MAX_PERCENTILE);
    (-(1.0 - p / 100.0).log10()).clamp(0.0, MAX_DECADES as f64)
}

/// Decades the x axis spans: enough to reach `reach` nines, at least one.
fn decades(reach: f64) -> usize {
    // The tolerance keeps 99.9 (2.9999... or 3.0000...1 nines) at 3 decades.
    ((reach - 1e-6).ceil() as usize).clamp(1, MAX_DECADES)
}

/// The smallest 1, 2 or 5 × 10^k at or above `max`; 1 when `max` is not
/// above 0. Falls back to `max` itself where 10^k over- or underflows.
fn nice_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let base = 10f64.powi(max.log10().floor() as i32);
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * base)
        .find(|&c| c >= max && c.is_finite())
        .unwrap_or(max)
}

/// Horizontal position of percentile `p` on an axis of `decades` decades.
fn x_of(p: f64, decades: usize) -> f64 {
    LEFT + nines(p) / decades.max(1) as f64 * PLOT_W
}

/// Vertical position of latency `ms` on an axis from 0 to `y_max`.
fn y_of(ms: f64, y_max: f64) -> f64 {
    TOP + PLOT_H - (ms / y_max).clamp(0.0, 1.0) * PLOT_H
}

/// Vertical gridlines and labels at each decade, and the x axis title.
fn x_axis(svg: &mut String, decades: usize) {
    let bottom = TOP + PLOT_H;
    for (n, label) in TICKS.iter().enumerate().take(decades + 1) {
        let x = LEFT + n as f64 / decades as f64 * PLOT_W;
        let _ = write!(
            svg,
            "<line x1=\"{x:.2}\" y1=\"{TOP:.2}\" x2=\"{x:.2}\" y2=\"{bottom:.2}\" stroke=\"#ddd\"/>\n\
             <text x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{label}</text>\n",
            bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\" font-size=\"14\">Percentile</text>",
        LEFT + PLOT_W / 2.0,
        HEIGHT - 15.0
    );
}

/// Horizontal gridlines and labels from 0 to `y_max`, and the y axis title.
fn y_axis(svg: &mut String, y_max: f64) {
    let step = y_max / Y_DIVISIONS as f64;
    let decimals = decimals(step);
    let right = LEFT + PLOT_W;
    for i in 0..=Y_DIVISIONS {
        let ms = step * i as f64;
        let y = y_of(ms, y_max);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT:.2}\" y1=\"{y:.2}\" x2=\"{right:.2}\" y2=\"{y:.2}\" stroke=\"#ddd\"/>\n\
             <text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{ms:.decimals$}</text>\n",
            LEFT - 8.0,
            y + 4.0
        );
    }
    let (x, y) = (20.0, TOP + PLOT_H / 2.0);
    let _ = writeln!(
        svg,
        "<text x=\"{x:.2}\" y=\"{y:.2}\" text-anchor=\"middle\" font-size=\"14\" \
         transform=\"rotate(-90 {x:.2} {y:.2})\">Latency (ms)</text>"
    );
}

/// Decimals that tell y labels `step` apart: 0 for 1 and up, 1 for 0.2, ...
fn decimals(step: f64) -> usize {
    let d = (-step.log10() - 1e-9).ceil();
    if d.is_nan() {
        0
    } else {
        d.clamp(0.0, 9.0) as usize
    }
}

/// A box in the top-left corner of the plot naming each series in its
/// colour; series with nothing to plot say so.
fn legend(svg: &mut String, series: &[Series], curves: &[Vec<(f64, f64)>]) {
    if series.is_empty() {
        return;
    }
    let labels: Vec<String> = series
        .iter()
        .zip(curves)
        .map(|(s, curve)| {
            let label = escape(&s.label);
            if curve.is_empty() {
                format!("{label} (no data)")
            } else {
                label
            }
        })
        .collect();
    let chars = series
        .iter()
        .zip(curves)
        .map(|(s, c)| s.label.chars().count() + if c.is_empty() { 10 } else { 0 })
        .max()
        .unwrap_or(0);
    let width = (chars as f64 * 7.0 + 45.0).min(PLOT_W - 20.0);
    let (x, y) = (LEFT + 10.0, TOP + 10.0);
    let _ = writeln!(
        svg,
        "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{width:.2}\" height=\"{:.2}\" \
         fill=\"white\" fill-opacity=\"0.85\" stroke=\"#bbb\"/>",
        labels.len() as f64 * 18.0 + 8.0
    );
    for (i, label) in labels.iter().enumerate() {
        let row = y + 17.0 + i as f64 * 18.0;
        let _ = write!(
            svg,
            "<line x1=\"{:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"{}\" \
             stroke-width=\"3\"/>\n<text x=\"{:.2}\" y=\"{row:.2}\">{label}</text>\n",
            x + 8.0,
            row - 4.0,
            x + 28.0,
            row - 4.0,
            PALETTE[i % PALETTE.len()],
            x + 35.0,
        );
    }
}

/// `text` made safe as XML character data or an attribute value: markup
/// characters become entities, line breaks become spaces, and control
/// characters XML 1.0 does not allow are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.to_string(),
            points: points.to_vec(),
        }
    }

    /// A typical run: percentiles from 0 to 99.9, latency rising with them.
    fn run(label: &str, scale: f64) -> Series {
        let points = [
            (0.0, 0.5),
            (50.0, 1.0),
            (90.0, 1.6),
            (99.0, 2.9),
            (99.9, 3.7),
        ];
        series(label, &points.map(|(p, ms)| (p, ms * scale)))
    }

    /// The (x, y) pairs of every polyline, in document order.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split("<polyline")
            .skip(1)
            .map(|rest| {
                let points = rest
                    .split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                points
                    .split(' ')
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    /// Checks the document is one `<svg>` element whose tags and entities
    /// are balanced enough for an XML parser.
    fn assert_valid(svg: &str) {
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        for bad in ["NaN", "\"inf", "inf\"", "inf,", ",inf"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        for (i, _) in svg.match_indices('&') {
            let entity = &svg[i..svg.len().min(i + 6)];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare & in {entity}"
            );
        }
    }

    #[test]
    fn document_is_one_svg_element() {
        let svg = render_svg(&[run("a", 1.0)], "latency");
        assert_valid(&svg);
        assert!(svg.contains("viewBox=\"0 0 900 500\""));
        assert!(svg.contains("font-family=\"sans-serif\""));
        assert!(svg.contains(">latency</text>"));
        assert!(svg.contains(">Percentile</text>"));
        assert!(svg.contains(">Latency (ms)</text>"));
    }

    #[test]
    fn one_polyline_per_non_empty_series() {
        let input = [
            run("a", 1.0),
            series("empty", &[]),
            run("b", 2.0),
            series("all bad", &[(f64::NAN, 1.0), (50.0, -1.0)]),
            run("c", 3.0),
        ];
        let svg = render_svg(&input, "t");
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">empty (no data)</text>"));
        assert!(svg.contains(">all bad (no data)</text>"));
        // Distinct colours, by position in the input.
        assert!(svg.contains("stroke=\"#1f77b4\" stroke-width=\"2\""));
        assert!(svg.contains("stroke=\"#2ca02c\" stroke-width=\"2\""));
        assert!(svg.contains("stroke=\"#9467bd\" stroke-width=\"2\""));
    }

    #[test]
    fn palette_cycles() {
        let input: Vec<Series> = (0..12).map(|i| run(&format!("r{i}"), 1.0)).collect();
        let svg = render_svg(&input, "t");
        assert_eq!(svg.matches("<polyline").count(), 12);
        assert_eq!(
            svg.matches("<polyline fill=\"none\" stroke=\"#1f77b4\"")
                .count(),
            2
        );
    }

    #[test]
    fn labels_and_title_are_escaped() {
        let svg = render_svg(&[run("a<b> & \"c\" 'd'", 1.0)], "x < y & z\n\u{0}");
        assert_valid(&svg);
        assert!(svg.contains(">a&lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;</text>"));
        assert!(svg.contains(">x &lt; y &amp; z </text>"));
        assert!(!svg.contains("a<b>") && !svg.contains('\u{0}'));
    }

    #[test]
    fn x_is_monotonic_in_percentile() {
        let ps = [
            0.0, 10.0, 50.0, 90.0, 99.0, 99.5, 99.9, 99.99, 99.999, 99.9999,
        ];
        for pair in ps.windows(2) {
            assert!(x_of(pair[0], 6) < x_of(pair[1], 6), "{pair:?}");
        }
        assert_eq!(x_of(0.0, 3), LEFT);
        assert!((x_of(99.9, 3) - (LEFT + PLOT_W)).abs() < 1e-6);
        for line in polylines(&render_svg(&[run("a", 1.0), run("b", 2.0)], "t")) {
            assert!(line.windows(2).all(|w| w[0].0 < w[1].0), "{line:?}");
        }
    }

    #[test]
    fn unsorted_points_are_drawn_in_percentile_order() {
        let svg = render_svg(&[series("a", &[(99.0, 3.0), (0.0, 1.0), (90.0, 2.0)])], "t");
        let line = &polylines(&svg)[0];
        assert!(line.windows(2).all(|w| w[0].0 < w[1].0), "{line:?}");
    }

    #[test]
    fn tick_99_is_right_of_90() {
        let svg = render_svg(&[run("a", 1.0)], "t");
        // The x attribute of the tick label's line: `<text x="..." ...>99%</text>`.
        let x = |label: &str| -> f64 {
            let tag = format!(">{label}</text>");
            let line = svg.lines().find(|l| l.ends_with(&tag)).unwrap();
            line.split('"').nth(1).unwrap().parse().unwrap()
        };
        let (x90, x99) = (x("90%"), x("99%"));
        assert!(x99 > x90, "{x90} {x99}");
    }

    #[test]
    fn ticks_reach_as_far_as_the_data() {
        let svg = render_svg(&[run("a", 1.0)], "t");
        assert!(svg.contains(">99.9%<"));
        assert!(!svg.contains(">99.99%<"));
        // Pinned: the 99.9% tick closes a three-decade axis.
        assert!(
            svg.contains("<text x=\"860.00\" y=\"458.00\" text-anchor=\"middle\">99.9%</text>")
        );

        let svg = render_svg(&[series("a", &[(0.0, 1.0), (99.95, 2.0)])], "t");
        assert!(svg.contains(">99.99%<") && !svg.contains(">99.999%<"));

        // p = 100 (and beyond) is drawn at the last tick, 99.9999%.
        let svg = render_svg(
            &[series("a", &[(0.0, 1.0), (100.0, 2.0), (100.5, 2.0)])],
            "t",
        );
        assert!(svg.contains(">99.9999%<"));
        let line = &polylines(&svg)[0];
        assert!((line[1].0 - (LEFT + PLOT_W)).abs() < 0.01, "{line:?}");
        assert_eq!(line[1].0, line[2].0);

        // No data: one decade.
        let svg = render_svg(&[], "t");
        assert!(svg.contains(">90%<") && !svg.contains(">99%<"));
    }

    #[test]
    fn nice_max_rounds_up_to_1_2_5() {
        let cases = [
            (3.7, 5.0),
            (12.0, 20.0),
            (0.0, 1.0),
            (1.0, 1.0),
            (5.0, 5.0),
            (5.1, 10.0),
            (1000.0, 1000.0),
            (0.37, 0.5),
            (0.013, 0.02),
            (-3.0, 1.0),
            (f64::NAN, 1.0),
            (f64::INFINITY, 1.0),
        ];
        for (max, nice) in cases {
            assert!(
                (nice_max(max) - nice).abs() < 1e-12,
                "{max} -> {}",
                nice_max(max)
            );
        }
        assert!(nice_max(f64::MAX) >= f64::MAX);
        assert!(nice_max(f64::MIN_POSITIVE / 1e10) > 0.0);
    }

    #[test]
    fn y_axis_has_six_gridlines_labelled_to_the_nice_max() {
        let svg = render_svg(&[run("a", 1.0)], "t");
        for label in ["0", "1", "2", "3", "4", "5"] {
            assert!(
                svg.contains(&format!(" text-anchor=\"end\">{label}</text>")),
                "{label}"
            );
        }
        assert_eq!(svg.matches("text-anchor=\"end\"").count(), 6);

        let svg = render_svg(&[series("a", &[(0.0, 0.1), (99.0, 0.13)])], "t");
        assert!(svg.contains(">0.20</text>") && svg.contains(">0.04</text>"));
    }

    #[test]
    fn all_zero_latencies_give_y_max_1() {
        let svg = render_svg(&[series("a", &[(0.0, 0.0), (99.0, 0.0)])], "t");
        assert_valid(&svg);
        assert!(svg.contains(" text-anchor=\"end\">1.0</text>"));
        assert!(svg.contains(" text-anchor=\"end\">0.2</text>"));
    }

    #[test]
    fn bad_input_does_not_panic() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let cases: Vec<Vec<Series>> = vec![
            vec![],
            vec![series("", &[])],
            vec![series("nan", &[(nan, nan), (nan, 1.0), (1.0, nan)])],
            vec![series("inf", &[(inf, 1.0), (1.0, inf), (-inf, -inf)])],
            vec![series("neg", &[(-1.0, 1.0), (50.0, -1.0), (-0.0, -0.0)])],
            vec![series("zero", &[(0.0, 0.0), (100.0, 0.0)])],
            vec![series("one", &[(50.0, 2.5)])],
            vec![series("huge", &[(0.0, f64::MAX), (99.0, f64::MAX)])],
            vec![series("tiny", &[(0.0, 5e-324), (99.0, 1e-320)])],
            vec![series("dup", &[(90.0, 1.0), (90.0, 1.0), (90.0, 2.0)])],
            vec![series(
                "mixed",
                &[(nan, 1.0), (10.0, 1.0), (inf, 2.0), (99.0, 3.0)],
            )],
        ];
        for input in cases {
            let svg = render_svg(&input, "t");
            assert_valid(&svg);
        }
        let svg = render_svg(&[series("one", &[(50.0, 2.5)])], "t");
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        let svg = render_svg(&[], "");
        assert!(svg.contains(">no data</text>"));
        assert_eq!(svg.matches("<polyline").count(), 0);
    }

    #[test]
    fn output_is_deterministic() {
        let input = [run("a", 1.0), run("b", 1.5)];
        assert_eq!(render_svg(&input, "t"), render_svg(&input, "t"));
    }
}
