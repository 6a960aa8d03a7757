//! Reading Prometheus' text format, as a scraper would, to check that figures moved.

use std::collections::BTreeMap;

/// One scrape: each series (name with its labels sorted, e.g.
/// `inferpush_api_submits_total{model="echo",outcome="accepted"}`) and its value.
#[derive(Debug, Default, Clone)]
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    /// Scrapes `url`.
    pub async fn of(url: &str) -> Self {
        let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("scraping {url}: {e}"));
        assert_eq!(response.status(), 200, "{url}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain"), "{url}: {content_type}");
        Self::parse(&response.text().await.unwrap())
    }

    /// Reads the text format.
    pub fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (key, value) = line.rsplit_once(' ').expect("`series value`");
            series.insert(normalise(key), value.parse().expect("a number"));
        }
        Self(series)
    }

    /// The value of `series` (written with its labels in any order), 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        self.0.get(&normalise(series)).copied().unwrap_or(0.0)
    }

    /// How much `series` grew since `before`.
    pub fn grew(&self, before: &Scrape, series: &str) -> f64 {
        self.value(series) - before.value(series)
    }

    /// True when some series' name is `name`.
    pub fn has(&self, name: &str) -> bool {
        self.0.keys().any(|k| k.split('{').next() == Some(name))
    }
}

/// The series with its labels sorted by name.
fn normalise(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else { return series.to_owned() };
    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').filter(|l| !l.is_empty()).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}
