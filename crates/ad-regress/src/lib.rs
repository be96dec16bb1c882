//! Learned heads on frozen CNN features, trained with Burn's autodiff on any device:
//!
//! - [`ScoreStudent`]: a per-patch MLP that regresses a teacher detector's anomaly map
//!   (PatchCore's by default) from a patch feature and its distances to a few prototypes of
//!   the good patches (k-means, frozen), trained on good images and synthetic anomalies ([`SyntheticAnomaly`])
//!   scored by teachers fitted on other folds of the good images, so prediction needs no
//!   memory bank and no nearest-neighbour search (the PNI idea, with the targets that make it
//!   work: its authors' head, trained on normal data only, answered "normal" for everything).
//! - [`SupervisedClassifier`]: transfer learning with a few labelled defects: frozen ImageNet
//!   backbone, global average pooling, a 2-way dense layer trained with class-weighted
//!   cross-entropy (Adam, early stop at a target training accuracy), and a class activation
//!   map (CAM) to localise the defect. [`cross_validate`] runs stratified k-fold CV
//!   ([`stratified_k_fold`]) with accuracy, balanced accuracy, confusion matrix and CAM pixel
//!   AUROC per fold. A classifier is never trained on one class: that is a
//!   [`RegressError::SingleClass`] error naming the ways out.
//! - [`compare_fusion`]: a logistic regression on several per-image scores (e.g. PatchCore's
//!   and the classifier's logit), cross-validated against each score alone.
//!
//! Training is seeded (initialisation on the host, shuffling, folds, synthetic anomalies):
//! the same seed gives the same weights on the CPU. Progress goes through
//! [`ad_core::Detector::set_epoch_callback`]; the library prints nothing.

mod classifier;
mod cv;
mod error;
mod feature_noise;
mod features;
mod folds;
mod fusion;
pub mod head;
mod io;
mod prototypes;
mod student;
mod synth;

pub use classifier::{
    CheckedClassifierConfig, ClassScore, ClassifierConfig, SupervisedClassifier, TrainReport,
    check_two_classes, default_classifier_tap,
};
pub use cv::{CvData, CvReport, FoldResult, MeanStd, cross_validate};
pub use error::RegressError;
pub use feature_noise::NoiseDirections;
pub use features::FeatureMaps;
pub use folds::{Fold, stratified_group_k_fold, stratified_k_fold, stratified_split};
pub use fusion::{FusionResult, LogisticRegression, compare_fusion};
pub use io::{CLASSIFIER_MAGIC, FORMAT_VERSION, STUDENT_MAGIC};
pub use student::{
    CheckedStudentConfig, ImageScore, LossWeights, ScoreGrids, ScoreStudent, StudentConfig,
    TargetPool, TargetTransform, TeacherFactory, WEIGHT_BIN, WEIGHT_SIGMA_BINS, pool_to_grid,
};
pub use synth::{SyntheticAnomaly, cut_paste, faint_spot, spot, thin_curve, vein};
