// librelureg: exact regularizers, gradients and adversarial perturbations for piecewise-linear
// (ReLU-family) networks. This umbrella header is the public API, and the headers it includes
// are all of it (the Makefile installs exactly these); each documents its functions: what they
// compute, shapes, ownership, errors and threads. Headers named *_impl.h, nn/layers.h and
// nn/passes.h are library internals (rr__ symbols, not exported from librelureg.so).
//
// Conventions, true of every header unless it says otherwise:
// - Names: public symbols are rr_ / RR_; rr__ / RR__ are internal.
// - Errors: every fallible call returns rr_status (core/status.h) and takes rr_error *err last
//   (may be NULL); switch on the code, the message is for people.
// - Argument order: the object (model), the workspace, the inputs with their sizes, the params
//   struct, the results, then err: rr_attack(m, ws, x, labels, B, &p, &out, &err). Params
//   structs are filled with designated initialisers; zero fields mean defaults.
// - Long calls (regularizers, attacks, certificates, reports, training) take cancellation and
//   progress callbacks through one rr_control member of their params (core/control.h).
// - Shapes: tensors are row-major float32 arrays with separate sizes; [B, D] is a batch of B
//   samples of D = product of the model's input_shape values, K is the number of classes.
// - Ownership: inputs are borrowed for the call; outputs are caller-owned arrays the call
//   fills; objects a call allocates say "owned" and name their _free / _release.
// - Threads: no global mutable state. A loaded model is immutable and may be shared by any
//   number of threads; a workspace, an optimizer or a writer serves one call at a time. Each
//   computation uses the OpenMP / BLAS threads of its calling thread (rr_set_num_threads), and
//   its results do not depend on their number.
#ifndef RR_RELUREG_H
#define RR_RELUREG_H

#include "core/version.h"
#include "core/status.h"
#include "core/control.h"
#include "core/tensor.h"
#include "core/rng.h"
#include "core/blas.h"
#include "io/safetensors.h"
#include "io/model_spec.h"
#include "nn/model.h"
#include "nn/workspace.h"
#include "nn/forward.h"
#include "nn/jacobian.h"
#include "nn/loss.h"
#include "reg/reg.h"
#include "reg/connections.h"
#include "train/idx.h"
#include "train/optim.h"
#include "train/train.h"
#include "attack/attack.h"
#include "attack/certify.h"
#include "attack/report.h"

#endif
