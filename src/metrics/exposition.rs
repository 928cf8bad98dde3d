//! The Prometheus text exposition format (0.0.4), table-driven: a list of [`Family`]
//! descriptors (name, type, help, and how to read its samples from a source) written by one
//! loop. Knows nothing of what the daemon measures; `families` holds the table.

use std::fmt::Write as _;

/// The `# TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric family, read from a source `S`.
pub struct Family<S> {
    /// Without the common prefix.
    pub name: &'static str,
    pub kind: Type,
    pub help: &'static str,
    /// Whether the family is exported at all just now.
    pub shown: fn(&S) -> bool,
    /// Appends the family's samples.
    pub samples: fn(&S, &mut Vec<Sample>),
}

/// For [`Family::shown`]: the family is always exported.
pub fn always<S>(_: &S) -> bool {
    true
}

/// A sample's number, written as the daemon always has: counts as integers, measurements with
/// a fixed number of decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Fixed { value: f64, decimals: usize },
}

/// One line of a family: `name[suffix]{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `_bucket`, `_sum`, `_count` for a histogram's lines; empty otherwise.
    pub suffix: &'static str,
    /// In the order written; values unescaped.
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

impl Sample {
    pub fn new(value: Value) -> Self {
        Self {
            suffix: "",
            labels: Vec::new(),
            value,
        }
    }

    pub fn int(value: u64) -> Self {
        Self::new(Value::Int(value))
    }

    pub fn fixed(value: f64, decimals: usize) -> Self {
        Self::new(Value::Fixed { value, decimals })
    }

    pub fn label(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((name, value.into()));
        self
    }

    pub fn suffix(mut self, suffix: &'static str) -> Self {
        self.suffix = suffix;
        self
    }
}

/// Every shown family of `families`, each as `# HELP`, `# TYPE` and its samples, with
/// `prefix` before every name.
pub fn render<S>(prefix: &str, families: &[Family<S>], source: &S) -> String {
    let mut out = String::with_capacity(4096);
    let mut samples = Vec::new();
    for family in families.iter().filter(|f| (f.shown)(source)) {
        let name = family.name;
        let _ = writeln!(out, "# HELP {prefix}{name} {}", escape_help(family.help));
        let _ = writeln!(out, "# TYPE {prefix}{name} {}", family.kind.as_str());
        samples.clear();
        (family.samples)(source, &mut samples);
        for sample in &samples {
            let _ = write!(out, "{prefix}{name}{}", sample.suffix);
            for (i, (label, value)) in sample.labels.iter().enumerate() {
                let open = if i == 0 { '{' } else { ',' };
                let _ = write!(out, "{open}{label}=\"{}\"", escape_label(value));
            }
            if !sample.labels.is_empty() {
                out.push('}');
            }
            let _ = match sample.value {
                Value::Int(n) => writeln!(out, " {n}"),
                Value::Fixed { value, decimals } => writeln!(out, " {value:.decimals$}"),
            };
        }
    }
    out
}

/// A label value as the format wants it: `\`, `"` and newline escaped.
fn escape_label(value: &str) -> String {
    escape(value, true)
}

/// HELP text escapes only `\` and newline.
fn escape_help(help: &str) -> String {
    escape(help, false)
}

fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' if quote => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Source {
        on: bool,
        word: &'static str,
    }

    fn table() -> [Family<Source>; 3] {
        [
            Family {
                name: "words_total",
                kind: Type::Counter,
                help: "Words, by word.",
                shown: always,
                samples: |s, out| {
                    out.push(Sample::int(3).label("word", s.word).label("x", "y"));
                },
            },
            Family {
                name: "seconds",
                kind: Type::Gauge,
                help: "A back\\slash and a\nnewline, \"quoted\".",
                shown: always,
                samples: |_, out| out.push(Sample::fixed(1.5, 3)),
            },
            Family {
                name: "optional",
                kind: Type::Histogram,
                help: "Shown when on.",
                shown: |s| s.on,
                samples: |_, out| {
                    out.push(Sample::int(1).suffix("_bucket").label("le", "+Inf"));
                    out.push(Sample::fixed(0.25, 6).suffix("_sum"));
                },
            },
        ]
    }

    #[test]
    fn families_are_written_in_table_order_with_their_samples() {
        let text = render(
            "p_",
            &table(),
            &Source {
                on: true,
                word: "hi",
            },
        );
        assert_eq!(
            text,
            "# HELP p_words_total Words, by word.\n\
             # TYPE p_words_total counter\n\
             p_words_total{word=\"hi\",x=\"y\"} 3\n\
             # HELP p_seconds A back\\\\slash and a\\nnewline, \"quoted\".\n\
             # TYPE p_seconds gauge\n\
             p_seconds 1.500\n\
             # HELP p_optional Shown when on.\n\
             # TYPE p_optional histogram\n\
             p_optional_bucket{le=\"+Inf\"} 1\n\
             p_optional_sum 0.250000\n"
        );
    }

    #[test]
    fn a_family_not_shown_is_left_out_whole() {
        let text = render(
            "p_",
            &table(),
            &Source {
                on: false,
                word: "hi",
            },
        );
        assert!(!text.contains("optional"), "{text}");
        assert!(text.contains("p_seconds 1.500\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(
            "p_",
            &table(),
            &Source {
                on: false,
                word: "a\\b \"c\"\nd",
            },
        );
        assert!(
            text.contains("p_words_total{word=\"a\\\\b \\\"c\\\"\\nd\",x=\"y\"} 3\n"),
            "{text}"
        );
    }
}
