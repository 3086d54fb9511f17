"""The rollout router (MLflow models-from-code): the registry's champion and challenger in one
served model, every prediction logged.

``python -m mlpipeline rollout build`` saves this file with both versions' boosters and
metadata (copied from their registered artifacts), each version's own copy of the
featurization (modules ``pipeline_features_champion`` and ``pipeline_features_challenger``),
``mlpipeline/serve/live.py`` (module ``pipeline_live``) and the settings (``rollout.json``). It
imports nothing else of this repository, so it runs wherever MLflow, LightGBM and pandas do.

Modes (``rollout.mode``):

- ``off``: the champion answers, as the packaged model does;
- ``shadow``: the champion answers; the challenger scores the same rows in the log's
  background thread, and its outputs go to the log only;
- ``canary``: each row goes to the challenger when its key falls in the challenger's share
  (``pipeline_live.to_challenger``); the key is the request's ``rollout.key_column`` value, or a
  hash of the row's values when the request has no such column. The model that did not answer
  scores the row in the background, so the log holds both outputs in every mode but ``off``.

Requests are checked as the packaged model checks them (the champion's ``check_request``, and
the challenger's for the rows it answers): a bad request gets HTTP 400 with the reason. The key
column is taken out before the checks; it is the row's request id in the log (else one is
made up). Each log record: request id, time, mode, both versions, which one answered, each
version's output, the request's latency, and the row's input values (or their SHA-256 with
``rollout.log_inputs: hash``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import sys
import time
import uuid

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

SETTINGS = "rollout"  # the settings artifact (rollout.json)
SERVER_APP = "mlflow.pyfunc.scoring_server.app"  # MLflow's model server: its app's module
LIVE_MODULE = "pipeline_live"  # mlpipeline/serve/live.py, shipped
ROLES = ("champion", "challenger")


class Member:
    """One registered version: its booster, metadata and own copy of the featurization."""

    def __init__(self, role: str, settings: dict, artifacts: dict) -> None:
        import lightgbm as lgb

        member = settings["members"][role]
        self.role, self.version = role, str(member["version"])
        self.features = importlib.import_module(member["features_module"])
        self.booster = lgb.Booster(model_file=artifacts[f"{role}_booster"])
        with open(artifacts[f"{role}_metadata"]) as handle:
            self.meta = json.load(handle)
        self.spec = self.features.FeatureSpec(**self.meta["spec"])
        self.threads = int(self.meta.get("num_threads", 1))
        check_encoding(self.booster, self.spec, self.features)

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows as the model takes them; raises the featurization's ``FeatureError``."""
        return self.features.check_request(
            frame,
            self.spec,
            max_rows=int(self.meta.get("max_batch_rows", 100_000)),
            unseen=self.meta.get("unseen_categories", "reject"),
        )

    def score(self, rows: pd.DataFrame):
        features = self.features.feature_matrix(rows, self.spec)
        raw = self.booster.predict(features, num_threads=self.threads)
        return self.features.model_output(raw, self.meta)

    def explain(self, rows: pd.DataFrame, output) -> pd.DataFrame:
        """``output`` (this member's answer for ``rows``) with each row's raw score and
        contributions (the featurization's ``explained_output``)."""
        features = self.features.feature_matrix(rows, self.spec)
        margins = self.booster.predict(features, raw_score=True, num_threads=self.threads)
        parts = self.booster.predict(features, pred_contrib=True, num_threads=self.threads)
        names = list(self.spec.features)
        return self.features.explained_output(output, margins, parts, names, self.meta)


class RouterModel(PythonModel):
    """Champion and challenger behind one endpoint (see the module's description)."""

    def load_context(self, context) -> None:
        with open(context.artifacts[SETTINGS]) as handle:
            self._settings = settings = json.load(handle)
        self._members = {
            role: Member(role, settings, context.artifacts)
            for role in ROLES
            if role in settings["members"]
        }
        live = importlib.import_module(LIVE_MODULE)
        self._route = live.to_challenger
        folder = live.log_folder(settings.get("log_dir", ""))
        self._log, self._hooked = None, False
        if folder is not None:
            self._log = live.PredictionLog(folder, int(settings["rotate_bytes"]), self._lines)

    @property
    def mode(self) -> str:
        return self._settings["mode"] if "challenger" in self._members else "off"

    @property
    def input_columns(self) -> list[str]:
        return list(self._members["champion"].spec.inputs)

    def predict(self, context, model_input: pd.DataFrame, params=None):
        explain = explain_param(params)
        started, clock = time.time(), time.perf_counter()
        frame = pd.DataFrame(model_input)
        keys = None
        column = self._settings.get("key_column") or None
        if column is not None and column in frame.columns:
            keys, frame = frame[column], frame.drop(columns=[column])
        rows = _checked(self._members["champion"], frame)
        picked = self._canary(rows, keys)
        answer, picked, outputs = self._answer(frame, rows, picked)
        if self._log is not None:
            latency = (time.perf_counter() - clock) * 1000
            self._log.append((started, latency, keys, frame, rows, picked, outputs))
            if not self._hooked:
                self._close_log_at_server_shutdown()
        return self._explained(rows, outputs) if explain else answer

    def _explained(self, rows: pd.DataFrame, outputs: dict) -> pd.DataFrame:
        """The answer with the contributions of the version that answered each row (the log
        keeps the plain answers)."""
        parts = {
            role: self._members[role].explain(rows[mask], output)
            for role, (mask, output) in outputs.items()
            if role in self._members and mask.any()
        }
        if len(parts) == 1:
            return next(iter(parts.values())).reset_index(drop=True)
        return merge(outputs["challenger"][0], parts["champion"], parts["challenger"])

    def _close_log_at_server_shutdown(self) -> None:
        """Under MLflow's model server, write the log out when the server shuts down, after
        its last answer: uvicorn ends a graceful shutdown (SIGTERM) by raising the signal again
        with its default action, so the process dies without running ``atexit`` handlers (which
        close the log everywhere else). The app's shutdown handlers do run."""
        self._hooked = True
        app = getattr(sys.modules.get(SERVER_APP), "app", None)
        handlers = getattr(getattr(app, "router", None), "on_shutdown", None)
        if isinstance(handlers, list):
            handlers.append(self._log.close)

    def _canary(self, rows: pd.DataFrame, keys: pd.Series | None) -> np.ndarray:
        """Which rows the challenger answers (none unless in canary mode)."""
        if self.mode != "canary":
            return np.zeros(len(rows), dtype=bool)
        if keys is None:
            found = row_keys(rows)
        else:
            found = [key_text(k) for k in keys.tolist()]
            if None in found:
                found = [
                    k if k is not None else r for k, r in zip(found, row_keys(rows), strict=True)
                ]
        share, salt = float(self._settings["canary_share"]), str(self._settings["salt"])
        return np.fromiter((self._route(k, share, salt) for k in found), bool, len(rows))

    def _answer(self, frame: pd.DataFrame, rows: pd.DataFrame, picked: np.ndarray) -> tuple:
        """The answer, the rows the challenger answered, and each member's outputs so far
        (``{role: (rows scored, output)}``). Rows the challenger cannot take (its own request
        checks refuse them) are answered by the champion; the log records why."""
        champion = self._members["champion"]
        theirs = None
        if picked.any():
            challenger = self._members["challenger"]
            try:
                theirs = challenger.score(challenger.check(frame[picked]))
            except challenger.features.FeatureError:
                picked = np.zeros(len(rows), dtype=bool)
        if theirs is None:
            answer = champion.score(rows)
            return answer, picked, {"champion": (~picked, answer)}
        if picked.all():
            return theirs, picked, {"challenger": (picked, theirs)}
        ours = champion.score(rows[~picked])
        outputs = {"champion": (~picked, ours), "challenger": (picked, theirs)}
        return merge(picked, ours, theirs), picked, outputs

    # ---- in the log's thread ---------------------------------------------------------------

    def _lines(self, item: tuple) -> list[str]:
        """The log lines of one answered request; the other model scores its rows here."""
        started, latency, keys, frame, rows, picked, outputs = item
        cells, errors = {}, {}
        for role, member in self._members.items():
            done = outputs.get(role)
            try:
                cells[member.version] = output_cells(self._complete(member, frame, rows, done))
            except Exception as exc:  # the shadow model failing must not lose the record
                cells[member.version] = ["null"] * len(frame)
                errors[member.version] = str(exc)[:500]
        head = {
            "time": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="milliseconds"),
            "mode": self.mode,
            "champion": self._members["champion"].version,
            "challenger": self._members["challenger"].version
            if "challenger" in self._members
            else None,
            "latency_ms": round(latency, 3),
        }
        if errors:
            head["errors"] = errors
        return records(head, request_ids(keys, len(frame)), picked, cells, self._inputs(frame))

    def _complete(self, member: Member, frame: pd.DataFrame, rows: pd.DataFrame, done):
        """The member's output for every row: what it answered, plus the rest scored now."""
        scored, output = done if done is not None else (np.zeros(len(frame), bool), None)
        if scored.all():
            return output
        rest = ~scored
        subset = rows[rest] if member.role == "champion" else member.check(frame[rest])
        extra = member.score(subset)
        return extra if output is None else merge(scored, extra, output)

    def _inputs(self, frame: pd.DataFrame) -> tuple[str, list[str]]:
        """The rows' input values as JSON objects, or the SHA-256 of each (``log_inputs``)."""
        lines = frame.to_json(orient="records", lines=True, date_format="iso").splitlines()
        if self._settings.get("log_inputs", "row") == "hash":
            return "inputs_sha256", [f'"{hashlib.sha256(x.encode()).hexdigest()}"' for x in lines]
        return "inputs", lines


def _checked(member: Member, frame: pd.DataFrame) -> pd.DataFrame:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    try:
        return member.check(frame)
    except member.features.FeatureError as exc:
        raise MlflowException(
            f"invalid request: {exc}", error_code=INVALID_PARAMETER_VALUE
        ) from None


def row_keys(rows: pd.DataFrame) -> list[str]:
    """A key per row from its values alone (numbers as floats, the rest as text, joined by a
    unit separator): the same row gets the same key in every process and on every machine."""
    numeric = [pd.api.types.is_numeric_dtype(kind) for kind in rows.dtypes]
    return [
        "\x1f".join(_number(v) if n else str(v) for v, n in zip(row, numeric, strict=True))
        for row in rows.to_numpy(dtype=object)
    ]


def _number(value) -> str:
    try:
        return repr(float(value))
    except (TypeError, ValueError):  # pd.NA
        return "nan"


def explain_param(params) -> bool:
    """The request's ``explain`` param: true or false (MLflow's params schema checks its
    type; a null it lets through is refused here)."""
    explain = (params or {}).get("explain", False)
    if not isinstance(explain, bool):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        raise MlflowException(
            f"invalid request: params.explain must be true or false, not {explain!r}",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return explain


def merge(picked: np.ndarray, others, chosen):
    """Outputs of the rows not ``picked`` (``others``) and of the ``picked`` ones, in row order."""
    if isinstance(chosen, pd.DataFrame) or isinstance(others, pd.DataFrame):
        first = others.set_axis(np.flatnonzero(~picked))
        second = chosen.set_axis(np.flatnonzero(picked))
        return pd.concat([first, second]).sort_index().reset_index(drop=True)
    out = np.empty(len(picked), dtype=float)
    out[~picked], out[picked] = others, chosen
    return out


def output_cells(output) -> list[str]:
    """Each row's output as JSON: a number (regression) or the class and probabilities."""
    if isinstance(output, pd.DataFrame):
        return output.to_json(orient="records", lines=True).splitlines()
    return [json.dumps(v) for v in np.asarray(output, dtype=float).tolist()]


def key_text(value) -> str | None:
    """A key as text: 1001 whether it came as 1001 or 1001.0 (a JSON column with a null)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def request_ids(keys: pd.Series | None, count: int) -> list[str]:
    """The rows' request ids: their keys, else ``<random>-<row>``."""
    prefix = uuid.uuid4().hex[:16]
    if keys is None:
        return [f"{prefix}-{i}" for i in range(count)]
    texts = [key_text(k) for k in keys.tolist()]
    return [f"{prefix}-{i}" if k is None else k for i, k in enumerate(texts)]


def records(
    head: dict, ids: list[str], picked: np.ndarray, cells: dict, inputs: tuple[str, list[str]]
) -> list[str]:
    """One JSON line per row: the request's fields, the row's id, who answered, the outputs
    (``{version: output}``) and the inputs (values or hash): ``inputs`` is (field, JSON)."""
    field, values = inputs
    answered = [head["champion"], head["challenger"]]
    lines = []
    for i, request_id in enumerate(ids):
        record = {"request_id": request_id, **head, "answered_by": answered[int(picked[i])]}
        outputs = ",".join(f"{json.dumps(v)}:{c[i]}" for v, c in cells.items())
        head_json = json.dumps(record, separators=(",", ":"))[:-1]
        lines.append(f'{head_json},"outputs":{{{outputs}}},"{field}":{values[i]}}}')
    return lines


def check_encoding(booster, spec, features) -> None:
    """The booster was trained on exactly the spec's features and category levels (the same
    check as the packaged model's, ``mlpipeline/serve/serving.py``)."""
    categorical = [spec.categories[c] for c in spec.features if c in spec.categories]
    if (
        booster.feature_name() != features.model_names(spec.features)
        or (booster.pandas_categorical or []) != categorical
    ):
        raise ValueError(
            f"the booster's features {booster.feature_name()} (categories "
            f"{booster.pandas_categorical}) do not match the feature spec {spec.features} "
            f"(categories {categorical}): package the model again"
        )


mlflow.models.set_model(RouterModel())
