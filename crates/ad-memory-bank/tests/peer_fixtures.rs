//! Coreset exactness against anomalib's `KCenterGreedy` algorithm run in PyTorch.
//! Fixtures are produced by `python3 tools/coreset_fixtures.py` (see that script for the layout).

use ad_memory_bank::{
    CoresetAlgorithm, CoresetParams, CoresetSampler, CoresetSize, ProjectionKind, ProjectionMatrix,
    StartPoint,
};

struct Case {
    n: usize,
    d: usize,
    d_proj: usize,
    count: usize,
    start: usize,
    features: Vec<f32>,
    matrix: Vec<f32>,
    projected: Vec<f32>,
    indices: Vec<usize>,
}

fn load(name: &str) -> Case {
    let path = format!(
        "{}/tests/fixtures/coreset_{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut off = 0;
    let mut u32s = [0usize; 5];
    for v in &mut u32s {
        *v = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        off += 4;
    }
    let [n, d, d_proj, count, start] = u32s;
    let mut f32s = |len: usize| {
        let v: Vec<f32> = bytes[off..off + 4 * len]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        off += 4 * len;
        v
    };
    let features = f32s(n * d);
    let matrix = f32s(d_proj * d);
    let projected = f32s(n * d_proj);
    let indices: Vec<usize> = bytes[off..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
        .collect();
    assert_eq!(indices.len(), count, "{path}: index count");
    Case {
        n,
        d,
        d_proj,
        count,
        start,
        features,
        matrix,
        projected,
        indices,
    }
}

fn sampler(case: &Case, algorithm: CoresetAlgorithm) -> CoresetSampler {
    CoresetSampler::new(CoresetParams {
        size: CoresetSize::Count(case.count),
        projection: ProjectionKind::Identity,
        seed: 0,
        start: StartPoint::Index(case.start),
        algorithm,
    })
    .unwrap()
}

#[test]
fn reference_and_fast_reproduce_anomalib_indices() {
    for name in ["gaussian", "clustered"] {
        let case = load(name);
        for algorithm in [CoresetAlgorithm::Reference, CoresetAlgorithm::Fast] {
            let sel = sampler(&case, algorithm)
                .select_projected(&case.projected, case.n, case.d_proj)
                .unwrap();
            assert_eq!(
                sel.indices, case.indices,
                "{name} {algorithm:?} on torch-projected features"
            );
        }
    }
}

#[test]
fn own_projection_with_the_peer_matrix_matches_torch() {
    for name in ["gaussian", "clustered"] {
        let case = load(name);
        let m = ProjectionMatrix::from_rows(case.matrix.clone(), case.d_proj, case.d).unwrap();
        let ours = m.project(&case.features, case.n).unwrap();
        for (a, b) in ours.iter().zip(&case.projected) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{name}: {a} vs {b}"
            );
        }
        // End to end (our projection, then selection): the same indices as the PyTorch run.
        let sel = sampler(&case, CoresetAlgorithm::Fast)
            .select_with_matrix(&case.features, case.n, &m)
            .unwrap();
        assert_eq!(sel.indices, case.indices, "{name}: end to end");
    }
}
