//! The level vocabulary, table-driven: every request of
//! `tests/data/levels.json` validated by the library into the levels and
//! threshold ranks the table gives (ranks checked independently with
//! SciPy's binomial when the table was written), or refused with the
//! table's message. The command line (`tests/cli.rs`) and Python
//! (`python/tests/test_levels.py`) are checked against the same table.

use confseg::levels::{Guarantee, ModeKind};
use confseg::quantile::Rank;
use confseg::{Alpha, Levels, Side};
use serde_json::Value;

/// The table.
fn table() -> Value {
    let text = include_str!("data/levels.json");
    serde_json::from_str(text).expect("the table is JSON")
}

/// A request of the table as the library's `Levels` (the mode parsed by
/// the library, as every shell does).
fn request(r: &Value) -> confseg::Result<Levels> {
    let num = |k: &str| r.get(k).and_then(Value::as_f64);
    Ok(Levels {
        mode: r["mode"].as_str().expect("a mode").parse()?,
        alpha: num("alpha"),
        weights: r.get("weights").map(|w| (w[0].as_f64().expect("w_I"), w[1].as_f64().expect("w_O"))),
        alpha_inner: num("alpha_inner"),
        alpha_outer: num("alpha_outer"),
        delta: num("delta"),
        risk: r.get("risk").and_then(Value::as_str).map(str::parse).transpose()?,
        bound: r.get("bound").and_then(Value::as_str).map(str::parse).transpose()?,
        grid: r.get("grid").and_then(Value::as_str).map(str::parse).transpose()?,
    })
}

#[test]
fn every_request_validates_as_the_table_says() {
    let t = table();
    let n = t["n"].as_u64().expect("n") as usize;
    let cases = t["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20);
    for case in cases {
        let got = request(&case["request"]).and_then(|l| l.guarantee());
        match (&case["want"], case.get("error")) {
            (Value::Object(w), None) => {
                let g = got.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(g.kind().to_string(), w["mode"].as_str().unwrap(), "{case}");
                assert_eq!(g.overall_alpha().map(Alpha::get), w["alpha"].as_f64(), "{case}");
                assert_eq!(g.delta().map(|d| d.get()), w["delta"].as_f64(), "{case}");
                if let Guarantee::RiskControl(r) = &g {
                    assert_eq!(
                        Some(r.risk().to_string().as_str()),
                        w.get("risk").and_then(Value::as_str),
                        "{case}"
                    );
                    assert_eq!(
                        r.bound().map(|b| b.to_string()).as_deref(),
                        w.get("bound").and_then(Value::as_str),
                        "{case}"
                    );
                    let grid = match r.search() {
                        confseg::risk::Search::Grid(g) => Some(g.to_string()),
                        confseg::risk::Search::Exact => None,
                    };
                    assert_eq!(grid.as_deref(), w.get("grid").and_then(Value::as_str), "{case}");
                }
                for (side, key, rank) in
                    [(Side::Inner, "alpha_inner", "rank_inner"), (Side::Outer, "alpha_outer", "rank_outer")]
                {
                    let a = g.alpha(side).get();
                    assert!((a - w[key].as_f64().unwrap()).abs() < 1e-12, "{case}: {side} level {a}");
                    let want_rank = w[rank].as_u64().map(|r| r as usize);
                    let got_rank = match &g {
                        Guarantee::Conformal(m) => Some(m.rank().of(m.alpha(side), n)),
                        Guarantee::RiskControl(_) => None,
                    };
                    assert_eq!(got_rank, want_rank, "{case}: {side} rank");
                }
            }
            (_, Some(Value::String(e))) => {
                let err = got.expect_err(&case.to_string()).to_string();
                assert!(err.contains(e.as_str()), "{case}: {err}");
            }
            _ => panic!("a case wants levels or an error: {case}"),
        }
    }
}

/// The same requests for several structures: the joint levels keep the
/// mode and rank, and a request that fails for one structure fails here.
#[test]
fn joint_requests_agree_with_single_ones() {
    for case in table()["cases"].as_array().expect("cases") {
        let Ok(levels) = request(&case["request"]) else { continue };
        let (single, joint) = (levels.guarantee(), levels.joint(3));
        match (single, joint) {
            (Ok(Guarantee::Conformal(m)), Ok(j)) => {
                assert_eq!(j.kind(), m.kind(), "{case}");
                assert_eq!(j.rank(), m.rank(), "{case}");
                assert_eq!(j.modes().len(), 3);
                let total: f64 =
                    j.modes().iter().map(|m| m.inner_alpha().get() + m.outer_alpha().get()).sum();
                if m.kind() == ModeKind::Bonferroni {
                    assert!(total <= j.alpha().get() * (1.0 + 1e-12), "{case}");
                }
            }
            // an explicit split and risk control have no joint version
            (Ok(Guarantee::Conformal(_)), Err(e)) => {
                assert!(levels.alpha_inner.is_some(), "{case}: {e}");
            }
            (Ok(Guarantee::RiskControl(_)), j) => assert!(j.is_err(), "{case}"),
            (Err(_), j) => assert!(j.is_err(), "{case}"),
        }
    }
    // a conditional request gives every structure the conditional rank
    let l = Levels::new(ModeKind::Max).with_alpha(0.1).with_delta(0.05);
    assert!(matches!(l.joint(2).unwrap().rank(), Rank::Conditional(_)));
}

/// Warnings that know the fix say it: the smallest finite level for this
/// many images, and `alpha = 0.9` read as 10% coverage.
#[test]
fn level_warnings_name_the_fix() {
    use confseg::calibrate::ImageStatistics;
    use confseg::{Calibration, Calibrator, Identity, Mode, Warning};
    let cal: Calibration = (0..20).map(|i| ImageStatistics { tau: f64::from(i), gamma: 0.0 }).collect();
    let c = Calibrator::new(Identity, Identity);
    // Bonferroni 1:4 at 0.1 with 20 images: the inner side (0.02) needs 49
    let sets = c.fit(&cal, Mode::bonferroni(Alpha::new(0.1).unwrap(), 1.0, 4.0).unwrap()).unwrap();
    let w = sets.warnings();
    assert!(
        matches!(w[..], [Warning::TooFewImages { side: "inner", needed: 49, smallest_alpha: Some(a), .. }]
            if (a - 0.04762).abs() < 1e-12),
        "{w:?}"
    );
    let text = w[0].to_string();
    assert!(
        text.contains("with 20 images, alpha_inner >= 0.04762 is finite") && text.contains("mode max"),
        "{text}"
    );
    // 1 - alpha read the wrong way round
    let sets = c.fit(&cal, Mode::max(Alpha::new(0.9).unwrap())).unwrap();
    let text: Vec<String> = sets.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        ["alpha = 0.9 promises coverage of only 10% (1 - alpha); for 90% coverage, alpha is 0.1"]
    );
    assert!(c.fit(&cal, Mode::max(Alpha::new(0.5).unwrap())).unwrap().warnings().is_empty());
}
