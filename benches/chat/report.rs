//! Each scenario run ends in a `Report`: a small human table on stdout, then the same figures
//! as one JSON line (`{"scenario":"fanout","streams":10000,...}`), easy to pick out with
//! `grep '^{'`.

use serde_json::Value;

/// What a figure must be to pass.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn holds(self, value: f64) -> bool {
        match self {
            Self::AtMost(limit) => value <= limit,
            Self::AtLeast(limit) => value >= limit,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::AtMost(limit) => format!("<= {}", number(limit)),
            Self::AtLeast(limit) => format!(">= {}", number(limit)),
        }
    }
}

pub struct Report {
    scenario: String,
    params: Vec<(String, Value)>,
    results: Vec<(String, Value, Option<Target>)>,
    notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            params: Vec::new(),
            results: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A parameter of the run (streams, rate, ...).
    pub fn param(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.params.push((key.to_owned(), value.into()));
        self
    }

    /// A measured figure; `None` (not measurable here, e.g. no server pid) is shown as `-`.
    pub fn result(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.results.push((key.to_owned(), value.into(), None));
        self
    }

    /// A measured figure with the target it must meet.
    pub fn checked(&mut self, key: &str, value: impl Into<Value>, target: Target) -> &mut Self {
        self.results.push((key.to_owned(), value.into(), Some(target)));
        self
    }

    /// A remark printed under the table (and carried in the JSON).
    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    /// Names of the figures that missed their target (a missing figure misses it).
    fn failures(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|(_, value, target)| target.is_some_and(|t| !value.as_f64().is_some_and(|v| t.holds(v))))
            .map(|(key, ..)| key.as_str())
            .collect()
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    pub fn print(&self) {
        let params: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={}", show(v))).collect();
        println!("\n== {}  {}", self.scenario, params.join(" "));
        println!("   {:<28} {:>14}  target", "figure", "value");
        for (key, value, target) in &self.results {
            let (target, verdict) = match target {
                Some(t) => (
                    t.describe(),
                    if value.as_f64().is_some_and(|v| t.holds(v)) {
                        "pass"
                    } else {
                        "FAIL"
                    },
                ),
                None => (String::new(), ""),
            };
            let line = format!("   {key:<28} {:>14}  {target:<14} {verdict}", show(value));
            println!("{}", line.trim_end());
        }
        for note in &self.notes {
            println!("   note: {note}");
        }
        println!("   verdict: {}", if self.passed() { "PASS" } else { "FAIL" });
        println!("{}", self.json());
    }

    /// One JSON object, keys in the order the figures were added (`scenario` first).
    fn json(&self) -> String {
        let mut fields: Vec<(&str, Value)> = vec![("scenario", self.scenario.clone().into())];
        fields.extend(self.params.iter().map(|(key, value)| (key.as_str(), value.clone())));
        fields.extend(self.results.iter().map(|(key, value, _)| (key.as_str(), value.clone())));
        fields.push(("pass", self.passed().into()));
        fields.push(("failed", self.failures().into()));
        if !self.notes.is_empty() {
            fields.push(("notes", self.notes.clone().into()));
        }
        let fields: Vec<String> = fields
            .iter()
            .map(|(key, value)| format!("{}:{value}", Value::from(*key)))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// `value` rounded to `decimals` places, for reading.
pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), number),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
