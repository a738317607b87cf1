//! Overriding a configuration: from a TOML file (`Config::from_toml_file`,
//! whose optional `profile = "..."` key names the base profile) or with
//! dotted `key=value` pairs (`Config::set("experts.epochs", "5")`, the
//! CLI's `--set`).

use super::Config;
use crate::error::{Error, Result};
use std::path::Path;

impl Config {
    /// Reads a TOML file: its `profile` key (default `default`) picks the base,
    /// every other key overrides that profile's value.
    pub fn from_toml_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse_toml(&text, path)
    }

    /// [`from_toml_file`](Self::from_toml_file) on a string.
    pub fn from_toml_str(text: &str) -> Result<Config> {
        Self::parse_toml(text, Path::new("<toml>"))
    }

    fn parse_toml(text: &str, path: &Path) -> Result<Config> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Json {
            path: path.into(),
            message: format!("TOML: {e}"),
        })?;
        let overrides = serde_json::to_value(&table).map_err(|e| Error::Json {
            path: path.into(),
            message: e.to_string(),
        })?;
        let base = overrides
            .get("profile")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let mut value = serde_json::to_value(Self::profile(base)?).expect("config serialises");
        merge(&mut value, &overrides);
        serde_json::from_value(value).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Overrides one field by its dotted path, e.g. `set("experts.epochs", "5")`
    /// or `set("data.source", r#"{"kind":"karpathy","json":"d.json"}"#)`.
    /// The value is read as JSON when it parses as JSON, else as a string.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let parsed: serde_json::Value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        let mut root = serde_json::to_value(&*self).expect("config serialises");
        let mut slot = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            slot = match slot.as_object_mut() {
                // an optional setting left out of the serialised form is
                // added; a misspelt one is refused by deserialisation below
                Some(o) if last => o.entry(part.to_string()).or_insert(serde_json::Value::Null),
                Some(o) => o
                    .get_mut(*part)
                    .ok_or_else(|| Error::Config(format!("no setting {key:?} (at {part:?})")))?,
                None => return Err(Error::Config(format!("no setting {key:?} (at {part:?})"))),
            };
        }
        *slot = parsed;
        *self = serde_json::from_value(root)
            .map_err(|e| Error::Config(format!("{key}={value}: {e}")))?;
        Ok(())
    }

    /// Applies `key=value` strings in order (see [`set`](Self::set)).
    pub fn apply_overrides<S: AsRef<str>>(&mut self, pairs: &[S]) -> Result<()> {
        for p in pairs {
            let p = p.as_ref();
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| Error::Config(format!("override {p:?} is not key=value")))?;
            self.set(k.trim(), v.trim())?;
        }
        self.validate()
    }

    /// The config as pretty TOML (what `--print-config` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                // A tagged enum (with "kind") is replaced whole when the kind changes.
                match b.get_mut(k) {
                    Some(slot)
                        if slot.get("kind").is_some()
                            && v.get("kind").is_some()
                            && slot.get("kind") != v.get("kind") =>
                    {
                        *slot = v.clone()
                    }
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::*;

    #[test]
    fn overrides_and_toml() {
        let mut c = Config::smoke();
        c.apply_overrides(&["experts.epochs=7", "model.temperature=0.05"])
            .unwrap();
        assert_eq!(c.experts.epochs, 7);
        assert_eq!(c.model.temperature, 0.05);
        assert!(c.set("experts.nope", "1").is_err());
        assert!(c.set("experts.epochs", "\"many\"").is_err());
        assert!(c.apply_overrides(&["experts.epochs=0"]).is_err());

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "profile = \"smoke\"\nseed = 5\n[experts]\nepochs = 9\n[model.text_tower]\nkind = \"projection_head\"\ndropout = 0.1\n",
        )
        .unwrap();
        let c = Config::from_toml_file(&f).unwrap();
        assert_eq!((c.seed, c.experts.epochs), (5, 9));
        assert_eq!(c.experts.batch_size, Config::smoke().experts.batch_size);
        assert_eq!(
            c.model.text_tower,
            TextTowerConfig::ProjectionHead { dropout: 0.1 }
        );
        // round trip through TOML text
        let again: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }
}
