//! The calibration-file readers on arbitrary bytes: fitted sets
//! (`ConfidenceSets`) and calibration states (`Calibration`) from JSON.
//! No panic, one-line errors; what is read predicts on small images,
//! fits, and writes back to JSON that reads again as the same value.
#![no_main]

use confseg::{Alpha, Calibration, Calibrator, ConfidenceSets, Image, Mode, ScoreTransform, Spacing};
use confseg::image::AsImage;
use confseg_fuzz::{image, ok, round_trip};
use libfuzzer_sys::fuzz_target;
use ndarray::ArrayD;

/// Small images of `ndim` axes: finite values, then extremes, then a NaN.
fn images(ndim: usize) -> Vec<ArrayD<f64>> {
    let shape: Vec<usize> = [3, 2, 2, 2][..ndim.min(4)].to_vec();
    let finite: Vec<u8> = vec![0, 1, 2, 3, 4, 6, 7, 23];
    let extremes: Vec<u8> = vec![8, 9, 11, 12, 13, 14, 16, 5];
    let nan: Vec<u8> = vec![0, 10];
    vec![image(&shape, &finite, &[]), image(&shape, &extremes, &[]), image(&shape, &nan, &[])]
}

fn predict_all(sets: &ConfidenceSets) {
    let dims: Vec<usize> = match sets.ndim() {
        Some(d) => vec![d, d % 4 + 1],
        None => vec![1, 2, 3],
    };
    for nd in dims {
        for (k, img) in images(nd).into_iter().enumerate() {
            let nan_free = k < 2;
            let plain = ok(sets.predict(&img));
            let own = Image::new(img.view(), Spacing::unit()).expect("unit spacing fits");
            let with_spacing = ok(sets.predict(&own));
            let single = img.mapv(|x| x as f32);
            let narrow = ok(sets.predict(&single));
            for p in [&plain, &with_spacing].into_iter().flatten() {
                assert_eq!(p.inner.shape(), img.shape());
                assert_eq!(p.outer.shape(), img.shape());
            }
            if let Some(p) = narrow {
                assert_eq!(p.inner.shape(), single.shape());
            }
            if !nan_free {
                assert!(plain.is_none(), "NaN scores predicted");
            }
            let _ = own.spacing();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(sets) = ok(serde_json::from_slice::<ConfidenceSets>(data)) {
        let _ = sets.warnings();
        let _ = (sets.mode().to_string(), sets.thresholds(), sets.spacing().to_string());
        predict_all(&sets);
        round_trip(&sets);
    }
    if let Some(cal) = ok(serde_json::from_slice::<Calibration>(data)) {
        let json = serde_json::to_string(&cal).expect("a calibration serializes");
        let back: Calibration = serde_json::from_str(&json).expect("a written calibration reads back");
        assert_eq!(back, cal, "calibration changed on the way back: {json}");
        let mut twice = cal.clone();
        ok(twice.merge(&cal));
        let a = Alpha::new(0.1).expect("a level");
        let modes = [Mode::marginal(a), Mode::max(a), Mode::bonferroni(a, 1.0, 4.0).expect("a split")];
        let calibrator = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Identity);
        for mode in modes {
            ok(cal.thresholds(&mode));
            if let Some(sets) = ok(calibrator.fit(&cal, mode)) {
                let _ = cal.warnings(&sets);
                predict_all(&sets);
            }
        }
    }
});
