#!/usr/bin/python3
"""Writes the bad-input case files tests/cases/http/<case>.json that tests/e2e/test_api.py
replays against a daemon serving `mlp` (input [12], 4 classes) and `cnn` (the harness's
models), each with the status and problem type it must answer. Bodies are raw strings
("body"), JSON values ("json") or base64 bytes ("body_b64"); "auth": true adds the token.
Regenerate: /usr/bin/python3 tests/cases/http/make_cases.py
"""
import base64
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "e2e"))
import harness  # noqa: E402
from relureg import export, safetensors  # noqa: E402

X = [0.1] * 12
P = "/v1/models/mlp/predict"
R = "/v1/models/mlp/regularizers"


def b64(b):
    return base64.b64encode(b).decode()


def st(tensors, doc):
    import torch
    return safetensors.save({k: torch.tensor(v) if not hasattr(v, "dtype") else v
                             for k, v in tensors.items()},
                            {"relureg.request": json.dumps(doc)})


def cases():
    import torch
    good_model = export(harness.mlp(5), [12])
    n = int.from_bytes(good_model[:8], "little")
    header = json.loads(good_model[8:8 + n])
    lying = dict(header)
    lying["0.weight"] = dict(lying["0.weight"], data_offsets=[0, 10 ** 9])
    h = json.dumps(lying).encode()
    h += b" " * (-(8 + len(h)) % 8)
    lying_file = len(h).to_bytes(8, "little") + h + good_model[8 + n:]
    no_arch = safetensors.save({"w": torch.zeros(2)}, {"note": "no architecture"})
    missing = dict(header)
    del missing["2.bias"]
    # Drop the tensor's bytes too (it is the last by name among equal sizes? rebuild instead).
    tensors, meta = safetensors.load(good_model)
    del tensors["2.bias"]
    missing_file = safetensors.save(tensors, meta)
    ok_req = {"inputs": [X], "labels": [1], "regularizers": [{"name": "input_gradient"}]}

    A = "/v1/models/mlp/attacks"

    def reg(**kw):
        d = dict(ok_req)
        d.update(kw)
        return d

    c = {
        # malformed bodies: 400
        "malformed_json": dict(method="POST", path=P, body='{inputs: [', status=400, type="malformed-body"),
        "truncated_json": dict(method="POST", path=P, body='{"inputs": [[0.1, 0.2', status=400, type="malformed-body"),
        "duplicate_keys": dict(method="POST", path=P, body='{"inputs": [%s], "inputs": [%s]}' % (X, X), status=400, type="malformed-body"),
        "top_level_array": dict(method="POST", path=P, body="[1, 2]", status=400, type="malformed-body"),
        "top_level_string": dict(method="POST", path=P, body='"inputs"', status=400, type="malformed-body"),
        "nan_token": dict(method="POST", path=P, body='{"inputs": [[NaN, 1]]}', status=400, type="malformed-body"),
        "infinity_token": dict(method="POST", path=P, body='{"inputs": [[Infinity]]}', status=400, type="malformed-body"),
        "number_overflows_double": dict(method="POST", path=P, body='{"inputs": [[1e999]]}', status=400, type="malformed-body"),
        "invalid_utf8": dict(method="POST", path=P, body_b64=b64(b'{"inputs": [[0.1]], "\xff\xfe": 1}'), status=400, type="malformed-body"),
        "empty_body": dict(method="POST", path=P, body="", status=400, type="malformed-body"),
        # shapes and types: 422
        "float32_overflow": dict(method="POST", path=P, json={"inputs": [[1e39] + X[1:]]}, status=422, type="non-finite"),
        "inputs_string": dict(method="POST", path=P, json={"inputs": "abc"}, status=422, type="invalid-request"),
        "inputs_missing": dict(method="POST", path=P, json={}, status=422, type="invalid-request"),
        "inputs_wrong_shape": dict(method="POST", path=P, json={"inputs": [X[:11]]}, status=422, type="shape-mismatch"),
        "inputs_ragged": dict(method="POST", path=P, json={"inputs": [X, X[:11]]}, status=422, type="shape-mismatch"),
        "inputs_strings_inside": dict(method="POST", path=P, json={"inputs": [["a"] * 12]}, status=422, type="invalid-request"),
        "kserve_negative_shape": dict(method="POST", path=P, json={"inputs": {"shape": [-1, 12], "datatype": "FP32", "data": X}}, status=422, type="shape-mismatch"),
        "kserve_overflowing_shape": dict(method="POST", path=P, json={"inputs": {"shape": [2 ** 62, 2 ** 62], "datatype": "FP32", "data": X}}, status=422, type="shape-mismatch"),
        "kserve_data_count": dict(method="POST", path=P, json={"inputs": {"shape": [2, 12], "datatype": "FP32", "data": X}}, status=422, type="shape-mismatch"),
        "kserve_bad_datatype": dict(method="POST", path=P, json={"inputs": {"shape": [1, 12], "datatype": "INT8", "data": X}}, status=422, type="unsupported-dtype"),
        "labels_out_of_range": dict(method="POST", path=R, json=reg(labels=[7]), status=422, type="invalid-request"),
        "labels_negative": dict(method="POST", path=R, json=reg(labels=[-1]), status=422, type="invalid-request"),
        "labels_wrong_count": dict(method="POST", path=R, json=reg(labels=[1, 2]), status=422, type="shape-mismatch"),
        "labels_not_integers": dict(method="POST", path=R, json=reg(labels=[1.5]), status=422, type="invalid-request"),
        "labels_missing": dict(method="POST", path=R, json={"inputs": [X], "regularizers": [{"name": "jacobian"}]}, status=422, type="invalid-request"),
        "unknown_regularizer": dict(method="POST", path=R, json=reg(regularizers=[{"name": "dropout"}]), status=422, type="invalid-request"),
        "curvature_h_negative": dict(method="POST", path=R, json=reg(regularizers=[{"name": "curvature", "h": -1}]), status=422, type="invalid-request"),
        "regularizer_unknown_option": dict(method="POST", path=R, json=reg(regularizers=[{"name": "jacobian", "foo": 1}]), status=422, type="invalid-request"),
        "projections_over_max_steps": dict(method="POST", path=R, json=reg(regularizers=[{"name": "jacobian", "estimator": "projection", "projections": 5000}]), status=422, type="invalid-request"),
        "onehot_with_projections": dict(method="POST", path=R, json=reg(regularizers=[{"name": "jacobian", "estimator": "projection", "directions": "onehot", "projections": 2}]), status=422, type="invalid-request"),
        "bad_reduction": dict(method="POST", path=R, json=reg(reduction="median"), status=422, type="invalid-request"),
        "bad_gradients": dict(method="POST", path=R, json=reg(gradients=["weights"]), status=422, type="invalid-request"),
        "empty_regularizers": dict(method="POST", path=R, json=reg(regularizers=[]), status=422, type="invalid-request"),
        "stale_version": dict(method="POST", path=P, json={"inputs": [X], "version": 99}, status=409, type="version-mismatch"),
        "version_not_integer": dict(method="POST", path=P, json={"inputs": [X], "version": "1"}, status=422, type="invalid-request"),
        "seed_negative": dict(method="POST", path=P, json={"inputs": [X], "seed": -1}, status=422, type="invalid-request"),
        "async_not_boolean": dict(method="POST", path=P, json={"inputs": [X], "async": "yes"}, status=422, type="invalid-request"),
        "unknown_member": dict(method="POST", path=P, json={"inputs": [X], "foo": 1}, status=422, type="invalid-request"),
        "jacobian_bad_of": dict(method="POST", path="/v1/models/mlp/jacobian", json={"inputs": [X], "of": "probabilities"}, status=422, type="invalid-request"),
        "connections_h_zero": dict(method="POST", path="/v1/models/mlp/connections", json={"inputs": [X], "labels": [0], "h": 0}, status=422, type="invalid-request"),
        "batch_over_max_batch": dict(method="POST", path=P, json={"inputs": [X] * 65}, status=413, type="batch-too-large"),
        "body_over_max_body": dict(method="POST", path=P, body_fill=5 << 20, status=413, type="body-too-large"),
        "unsupported_content_type": dict(method="POST", path=P, body="<inputs/>", headers={"Content-Type": "text/xml"}, status=415, type="unsupported-media-type"),
        "unknown_model": dict(method="POST", path="/v1/models/nope/predict", json={"inputs": [X]}, status=404, type="not-found"),
        "model_name_traversal": dict(method="GET", path="/v1/models/..", status=422, type="invalid-request"),
        "model_name_encoded_traversal": dict(method="GET", path="/v1/models/%2E%2E%2Fetc%2Fpasswd", status=404, type="not-found"),
        "model_name_too_long": dict(method="GET", path="/v1/models/" + "a" * 70, status=422, type="invalid-request"),
        "model_name_bad_characters": dict(method="POST", path="/v1/models/m%20x/predict", json={"inputs": [X]}, status=422, type="invalid-request"),
        # model uploads
        "put_without_token": dict(method="PUT", path="/v1/models/new", body_b64=b64(good_model), headers={"Content-Type": "application/vnd.safetensors"}, status=401, type="unauthorized"),
        "put_wrong_token": dict(method="PUT", path="/v1/models/new", body_b64=b64(good_model), headers={"Content-Type": "application/vnd.safetensors", "Authorization": "Bearer nope"}, status=401, type="unauthorized"),
        "delete_without_token": dict(method="DELETE", path="/v1/models/mlp", status=401, type="unauthorized"),
        "put_truncated_safetensors": dict(method="PUT", path="/v1/models/new", auth=True, body_b64=b64(good_model[:len(good_model) // 2]), headers={"Content-Type": "application/vnd.safetensors"}, status=400, type="malformed-body"),
        "put_lying_safetensors": dict(method="PUT", path="/v1/models/new", auth=True, body_b64=b64(lying_file), headers={"Content-Type": "application/vnd.safetensors"}, status=400, type="malformed-body"),
        "put_header_length_bomb": dict(method="PUT", path="/v1/models/new", auth=True, body_b64=b64(b"\xff" * 8 + b"{}"), headers={"Content-Type": "application/vnd.safetensors"}, status=400, type="malformed-body"),
        "put_without_architecture": dict(method="PUT", path="/v1/models/new", auth=True, body_b64=b64(no_arch), headers={"Content-Type": "application/vnd.safetensors"}, status=400, type="malformed-body"),
        "put_missing_tensor": dict(method="PUT", path="/v1/models/new", auth=True, body_b64=b64(missing_file), headers={"Content-Type": "application/vnd.safetensors"}, status=422, type="shape-mismatch"),
        "put_wrong_content_type": dict(method="PUT", path="/v1/models/new", auth=True, body_b64=b64(good_model), headers={"Content-Type": "application/json"}, status=415, type="unsupported-media-type"),
        "put_invalid_name": dict(method="PUT", path="/v1/models/..", auth=True, body_b64=b64(good_model), headers={"Content-Type": "application/vnd.safetensors"}, status=422, type="invalid-request"),
        # routing
        "wrong_method": dict(method="POST", path="/v1/models", json={}, status=405, type="method-not-allowed"),
        "unknown_route": dict(method="GET", path="/v1/nothing", status=404, type="not-found"),
        "unknown_job": dict(method="GET", path="/v1/jobs/" + "0" * 32, status=404, type="not-found"),
        "dataset_bad_split": dict(method="GET", path="/v1/datasets/fashion-mnist/valid", status=404, type="not-found"),
        "dataset_limit_over_cap": dict(method="GET", path="/v1/datasets/fashion-mnist/test?limit=1000", status=422, type="invalid-request"),
        "static_traversal": dict(method="GET", path="/static/../Makefile", status=404, type="not-found"),
        # binary requests
        "binary_field_given_twice": dict(method="POST", path=P, body_b64=b64(st({"/inputs": [X]}, {"inputs": [X]})), headers={"Content-Type": "application/vnd.safetensors"}, status=400, type="malformed-body"),
        "binary_nan": dict(method="POST", path=P, body_b64=b64(st({"/inputs": [[math.nan] * 12]}, {})), headers={"Content-Type": "application/vnd.safetensors"}, status=422, type="non-finite"),
        "binary_integer_inputs": dict(method="POST", path=P, body_b64=b64(st({"/inputs": torch.zeros(1, 12, dtype=torch.int32)}, {})), headers={"Content-Type": "application/vnd.safetensors"}, status=422, type="unsupported-dtype"),
        "binary_float_labels": dict(method="POST", path=R, body_b64=b64(st({"/inputs": [X], "/labels": torch.tensor([1.0])}, {"regularizers": [{"name": "jacobian"}]})), headers={"Content-Type": "application/vnd.safetensors"}, status=422, type="unsupported-dtype"),
        "binary_corrupt": dict(method="POST", path=P, body_b64=b64(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      "), headers={"Content-Type": "application/vnd.safetensors"}, status=400, type="malformed-body"),
        # attacks, certify, robustness
        "attack_unknown": dict(method="POST", path=A, json={"attack": "apgd_x", "inputs": [X], "labels": [1]}, status=422, type="invalid-request"),
        "attack_missing_labels": dict(method="POST", path=A, json={"attack": "pgd", "inputs": [X]}, status=422, type="invalid-request"),
        "attack_nan_inputs": dict(method="POST", path=A, body='{"attack": "fgsm", "inputs": [[NaN, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]], "labels": [1]}', status=400, type="malformed-body"),
        "attack_huge_value": dict(method="POST", path=A, json={"attack": "fgsm", "inputs": [[1e39] + X[1:]], "labels": [1]}, status=422, type="non-finite"),
        "attack_wrong_shape": dict(method="POST", path=A, json={"attack": "pgd", "inputs": [X[:11]], "labels": [1]}, status=422, type="shape-mismatch"),
        "attack_steps_float": dict(method="POST", path=A, json={"attack": "pgd", "steps": 2.5, "inputs": [X], "labels": [1]}, status=422, type="invalid-request"),
        "attack_overshoot_negative": dict(method="POST", path=A, json={"attack": "deepfool", "overshoot": -0.1, "inputs": [X], "labels": [1]}, status=422, type="invalid-request"),
        "attack_bim_random_start": dict(method="POST", path=A, json={"attack": "bim", "random_start": True, "inputs": [X], "labels": [1]}, status=422, type="invalid-request"),
        "attack_label_out_of_range": dict(method="POST", path=A, json={"attack": "pgd", "inputs": [X], "labels": [4]}, status=422, type="invalid-request"),
        "attack_unknown_model": dict(method="POST", path="/v1/models/nope/attacks", json={"attack": "pgd", "inputs": [X], "labels": [1]}, status=404, type="not-found"),
        "certify_bad_norm": dict(method="POST", path="/v1/models/mlp/certify", json={"inputs": [X], "norm": "l1"}, status=422, type="invalid-request"),
        "certify_bad_labels": dict(method="POST", path="/v1/models/mlp/certify", json={"inputs": [X], "labels": [1, 2]}, status=422, type="shape-mismatch"),
        "robustness_no_epsilons": dict(method="POST", path="/v1/models/mlp/robustness", json={"inputs": [X], "labels": [1]}, status=422, type="invalid-request"),
        "robustness_negative_epsilon": dict(method="POST", path="/v1/models/mlp/robustness", json={"inputs": [X], "labels": [1], "epsilons": [0.1, -0.1]}, status=422, type="invalid-request"),
        "robustness_65_epsilons": dict(method="POST", path="/v1/models/mlp/robustness", json={"inputs": [X], "labels": [1], "epsilons": [0.1] * 65}, status=422, type="invalid-request"),
        "robustness_attack_epsilon": dict(method="POST", path="/v1/models/mlp/robustness", json={"inputs": [X], "labels": [1], "epsilons": [0.1], "attack": {"attack": "pgd", "epsilon": 0.3}}, status=422, type="invalid-request"),
        "robustness_attack_norm_differs": dict(method="POST", path="/v1/models/mlp/robustness", json={"inputs": [X], "labels": [1], "epsilons": [0.1], "attack": {"attack": "pgd", "norm": "l2"}}, status=422, type="invalid-request"),
        # KServe v2
        "v2_wrong_input_name": dict(method="POST", path="/v2/models/mlp/infer", json={"inputs": [{"name": "x", "shape": [1, 12], "datatype": "FP32", "data": X}]}, status=422, type="invalid-request"),
        "v2_binary_size_mismatch": dict(method="POST", path="/v2/models/mlp/infer", body_b64=b64(json.dumps({"inputs": [{"name": "input", "shape": [1, 12], "datatype": "FP32", "parameters": {"binary_data_size": 48}}]}).encode() + b"\x00" * 40), headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(json.dumps({"inputs": [{"name": "input", "shape": [1, 12], "datatype": "FP32", "parameters": {"binary_data_size": 48}}]})))}, status=400, type="malformed-body"),
        "v2_wrong_version": dict(method="GET", path="/v2/models/mlp/versions/7", status=404, type="not-found"),
    }
    return c


def main():
    for f in os.listdir(HERE):
        if f.endswith(".json"):
            os.remove(os.path.join(HERE, f))
    c = cases()
    for name, case in c.items():
        with open(os.path.join(HERE, f"{name}.json"), "w") as f:
            json.dump(case, f, indent=1)
            f.write("\n")
    print(f"{len(c)} cases")


if __name__ == "__main__":
    main()
