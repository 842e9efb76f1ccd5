// librelureg: exact regularizers, gradients and adversarial perturbations for piecewise-linear
// (ReLU-family) networks. This umbrella header is the public API; each included header
// documents its functions (shapes, ownership, errors, threads).
//
// Conventions: public symbols are rr_ / RR_; every fallible call returns rr_status and takes
// rr_error *err last (may be NULL); tensors are row-major float32 arrays with separate sizes;
// outputs are caller-owned unless a header says otherwise.
#ifndef RR_RELUREG_H
#define RR_RELUREG_H

#include "core/blas.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/model_spec.h"
#include "io/safetensors.h"
#include "nn/forward.h"
#include "nn/jacobian.h"
#include "nn/loss.h"
#include "nn/model.h"
#include "nn/workspace.h"
#include "reg/connections.h"
#include "train/idx.h"
#include "train/optim.h"
#include "train/train.h"
#include "reg/reg.h"
#include "attack/attack.h"
#include "attack/certify.h"
#include "attack/report.h"

#endif
