//! The digest's chart: follow-ups kept vs overdue per day, prior-failure cues by category and
//! the recovery checklist's step rates, drawn in-process with plotters into a PNG. A light card with dark text and saturated bars
//! reads on Discord's dark and light themes alike.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::Figures;

/// DejaVu Sans (free licence, see DejaVuSans-LICENSE.txt), embedded so no system font is needed.
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const WIDTH: u32 = 900;
const HEIGHT: u32 = 640;
/// The top row (follow-ups, cues); the checklist takes the rest.
const TOP_ROW: u32 = 370;
const CARD: RGBColor = RGBColor(247, 247, 248);
const INK: RGBColor = RGBColor(35, 39, 42);
const KEPT: RGBColor = RGBColor(46, 160, 67);
const LAPSED: RGBColor = RGBColor(207, 34, 46);
const CUES: RGBColor = RGBColor(88, 101, 242);
const STEPS: RGBColor = RGBColor(191, 135, 0);

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing the digest chart failed: {0}")]
    Draw(String),
    #[error("encoding the digest chart failed: {0}")]
    Encode(#[from] png::EncodingError),
}

fn draw_err<E: std::fmt::Debug>(e: E) -> ChartError {
    ChartError::Draw(format!("{e:?}"))
}

fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok())
}

/// The chart as PNG bytes.
pub fn render(figures: &Figures, title: &str) -> Result<Vec<u8>, ChartError> {
    if !font_ready() {
        return Err(ChartError::Draw("the embedded font did not load".into()));
    }
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&CARD).map_err(draw_err)?;
        let root = root
            .titled(title, ("sans-serif", 22).into_font().color(&INK))
            .map_err(draw_err)?;
        let (top, bottom) = root.split_vertically(TOP_ROW);
        let (left, right) = top.split_horizontally(WIDTH / 2);
        follow_ups(&left, figures)?;
        cues(&right, figures)?;
        checklist(&bottom, figures)?;
        root.present().map_err(draw_err)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&rgb)?;
    }
    Ok(png_bytes)
}

fn follow_ups<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    f: &Figures,
) -> Result<(), ChartError> {
    let days: Vec<_> = f.by_day.iter().collect();
    let n = days.len().max(1) as i32;
    let top = days.iter().map(|(_, (k, l))| (*k).max(*l)).max().unwrap_or(0).max(1) as i32 + 1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Follow-ups: kept on time (green), overdue (red)",
            ("sans-serif", 16).into_font().color(&INK),
        )
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(32)
        .build_cartesian_2d(0..n * 3, 0..top)
        .map_err(draw_err)?;
    let labels: Vec<String> = days.iter().map(|(d, _)| d.strftime("%a %-d").to_string()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_labels(top.min(6) as usize)
        .x_labels(n as usize * 3)
        .x_label_formatter(&|x| {
            if x % 3 == 1 {
                labels.get((x / 3) as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 12).into_font().color(&INK))
        .axis_style(INK)
        .draw()
        .map_err(draw_err)?;
    for (i, (_, (kept, lapsed))) in days.iter().enumerate() {
        let x = i as i32 * 3;
        chart
            .draw_series([
                Rectangle::new([(x, 0), (x + 1, *kept as i32)], KEPT.filled()),
                Rectangle::new([(x + 1, 0), (x + 2, *lapsed as i32)], LAPSED.filled()),
            ])
            .map_err(draw_err)?;
    }
    Ok(())
}

fn cues<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, f: &Figures) -> Result<(), ChartError> {
    let rows: Vec<(String, i32)> = f
        .cues
        .iter()
        .map(|(c, n)| {
            let label = crate::engine::Category::parse(c).map_or(c.clone(), |c| c.label().to_string());
            (label, *n as i32)
        })
        .collect();
    let top = rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) + 1;
    let bars = Bars {
        caption: "Prior-failure cues by kind".into(),
        rows,
        top,
        label_width: 230,
        colour: CUES,
        percent: false,
    };
    bars.draw(area)
}

fn checklist<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    f: &Figures,
) -> Result<(), ChartError> {
    let rates = &f.checklist;
    // The first step on top: rows are drawn from the bottom up.
    let rows = crate::engine::RecoveryStep::ALL
        .into_iter()
        .rev()
        .map(|s| (s.describe().to_string(), rates.percent(s).unwrap_or(0) as i32))
        .collect();
    let bars = Bars {
        caption: format!("Recovery checklist: % of {}", rates.counted()),
        rows,
        top: 100,
        label_width: 260,
        colour: STEPS,
        percent: true,
    };
    bars.draw(area)
}

/// A horizontal bar chart: one labelled bar per row, bottom row first.
struct Bars {
    caption: String,
    rows: Vec<(String, i32)>,
    /// The x axis runs from 0 to here.
    top: i32,
    label_width: u32,
    colour: RGBColor,
    /// Label the x axis as percentages.
    percent: bool,
}

impl Bars {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<(), ChartError> {
        let n = self.rows.len().max(1) as i32;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, ("sans-serif", 16).into_font().color(&INK))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(self.label_width)
            .build_cartesian_2d(0..self.top, 0..n * 10)
            .map_err(draw_err)?;
        let x_label = |x: &i32| if self.percent { format!("{x}%") } else { x.to_string() };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(self.top.min(6) as usize)
            .x_label_formatter(&x_label)
            .y_labels(n as usize * 10)
            .y_label_formatter(&|y| {
                if y % 10 == 5 {
                    self.rows
                        .get((y / 10) as usize)
                        .map(|(l, _)| l.clone())
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 12).into_font().color(&INK))
            .axis_style(INK)
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(self.rows.iter().enumerate().map(|(i, (_, v))| {
                let y = i as i32 * 10;
                Rectangle::new([(0, y + 2), (*v, y + 8)], self.colour.filled())
            }))
            .map_err(draw_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_of_the_right_size() {
        let mut f = Figures::default();
        f.cues.insert("not_received".into(), 4);
        f.cues.insert("missed_callback".into(), 2);
        f.by_day.insert("2026-11-23".parse().unwrap(), (3, 1));
        f.by_day.insert("2026-11-24".parse().unwrap(), (2, 0));
        f.checklist.conversations = 4;
        f.checklist.done = [3, 2, 2, 4, 1, 3];
        let png = render(&f, "Daily coaching digest").unwrap();
        if let Ok(path) = std::env::var("BACKSTOP_CHART_OUT") {
            std::fs::write(path, &png).unwrap();
        }
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
    }
}
