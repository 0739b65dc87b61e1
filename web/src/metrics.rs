//! The Prometheus text exposition format (version 0.0.4), written from a typed stats
//! record: a family is a `# HELP` and `# TYPE` line and its samples, one per label set.
//! Counters' samples take the `_total` suffix, as Prometheus' own client libraries write
//! them. Each binary says what its stats expose by implementing [`Metrics`].
//!
//! Why our own fifty lines rather than a metrics crate: the crates (`prometheus`,
//! `prometheus-client`, `metrics-exporter-prometheus`) own the values in a registry that
//! the program updates as it goes; here the values already live in one record made once a
//! second, and a registry would be a second copy of them to keep in step. The format is
//! three kinds of line; the end-to-end test reads ours with Prometheus' Python parser.

use std::fmt::Write;

/// Stats that can be exposed as Prometheus metrics.
pub trait Metrics {
    fn write_metrics(&self, m: &mut MetricsWriter);
}

/// One sample: its labels (name, value) and its value.
pub type Sample<'a> = (Vec<(&'a str, String)>, f64);

/// A family with one sample per item of a list (a stream, a receiver): its name (after
/// the prefix), help, whether it is a counter, and an item's value (`None`: no sample).
pub type PerItem<'a, T> = (&'a str, &'a str, bool, &'a dyn Fn(&T) -> Option<f64>);

/// Builds the text of one scrape.
#[derive(Default)]
pub struct MetricsWriter {
    text: String,
}

impl MetricsWriter {
    /// A family of samples; nothing is written for a family without samples.
    pub fn family(&mut self, name: &str, help: &str, counter: bool, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        let kind = if counter { "counter" } else { "gauge" };
        let _ = writeln!(self.text, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        let suffix = if counter { "_total" } else { "" };
        for (labels, value) in samples {
            self.text.push_str(name);
            self.text.push_str(suffix);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{k}=\"{}\"", escape(v, true));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {}", number(*value));
        }
    }

    /// Families of samples per item, each item's samples labelled by `labels`.
    pub fn per_item<T>(
        &mut self,
        prefix: &str,
        items: &[T],
        labels: impl Fn(&T) -> Vec<(&'static str, String)>,
        families: &[PerItem<T>],
    ) {
        for (name, help, counter, value) in families {
            let samples: Vec<Sample> = items
                .iter()
                .filter_map(|i| value(i).map(|v| (labels(i), v)))
                .collect();
            self.family(&format!("{prefix}{name}"), help, *counter, &samples);
        }
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// Backslash and newline escaped (and in label values the double quote).
fn escape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_counters_labels_and_escapes() {
        let mut m = MetricsWriter::default();
        m.family(
            "x_lost",
            "lost \\ packets\nall",
            true,
            &[(vec![("source", "a\"b\\c".into())], 3.0)],
        );
        m.family(
            "x_level",
            "level",
            false,
            &[(vec![], f64::NEG_INFINITY), (vec![("k", "v".into())], 0.5)],
        );
        m.family("x_none", "nothing", false, &[]);
        assert_eq!(
            m.finish(),
            "# HELP x_lost lost \\\\ packets\\nall\n# TYPE x_lost counter\nx_lost_total{source=\"a\\\"b\\\\c\"} 3\n\
             # HELP x_level level\n# TYPE x_level gauge\nx_level -Inf\nx_level{k=\"v\"} 0.5\n"
        );
    }
}
