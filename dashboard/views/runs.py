"""Runs page of `streamlit run dashboard`: every run in runs/ as a table, search/filter/sort, pick runs
for the Compare page, rename and delete (with confirmation). Damaged runs are listed with the reason.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import common
from pipeline import runs as runs_mod
from pipeline.errors import QuickDrawError

STATUSES = runs_mod.RUN_STATES
SORTS = {
    "last update": "updated",
    "name": "name",
    "best val top-3": "best val top-3",
    "test top-1": "test top-1",
    "epochs": "epochs",
}


MISSING = "-"  # what an empty cell shows (a run not evaluated yet, without a model, ...), not "None"


def column_config() -> dict:
    """Widths (long names and parents are not cut off) and number formats of the table's columns."""
    number = {"best val top-3": "%.4f", "test top-1": "%.4f", "test top-3": "%.4f", "best epoch": "%d",
              "model epoch": "%d", "classes": "%d", "chunks": "%d", "epochs": "%d"}
    config = {name: st.column_config.NumberColumn(format=fmt, width="small" if fmt == "%d" else None)
              for name, fmt in number.items()}
    config.update({name: st.column_config.Column(width="small") for name in ("status", "model")})
    config["name"] = st.column_config.Column(width="medium", pinned=True)  # stays in view when scrolled sideways
    config["parent"] = st.column_config.Column(width="medium")
    config["note"] = st.column_config.Column(width="large")
    config["updated"] = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")
    return config


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """The table shown on the page, one row per run summary. "best epoch" is pipeline.runs.best_row's
    (the trainer's rule) and "best val top-3" is that epoch's; "model epoch" is the epoch model/ holds
    (model/meta.json)."""
    records = []
    for r in rows:
        records.append({
            "name": r["name"],
            "status": r["status"],
            "model": r.get("model") or "",
            "representation": r.get("representation") or "",
            "classes": r.get("classes") or 0,
            "chunks": r.get("chunks") or 0,
            "epochs": r.get("epochs") or 0,
            "best val top-3": r.get("best_val_top3"),
            "best epoch": r.get("best_epoch"),
            "model epoch": r.get("model_epoch"),
            "test top-1": r.get("test_top1"),
            "test top-3": r.get("test_top3"),
            "parent": r.get("parent") or "",
            "updated": dt.datetime.fromtimestamp(r["updated"]) if r.get("updated") else None,
            "note": r.get("damaged") or ("imported seed logs" if r.get("imported") else ""),
        })
    columns = ["name", "status", "model", "parent", "classes", "epochs", "chunks", "best val top-3", "best epoch",
               "model epoch", "test top-1", "test top-3", "representation", "updated", "note"]
    table = pd.DataFrame.from_records(records, columns=columns)
    for column in ("best val top-3", "best epoch", "model epoch", "test top-1", "test top-3"):
        table[column] = pd.to_numeric(table[column], errors="coerce")  # None -> NaN: shown as MISSING
    return table


def sorted_table(rows: list[dict], column: str, descending: bool) -> tuple[pd.DataFrame, list[str]]:
    """(runs_table of the rows sorted by `column`, its epoch_disagreements), built again only when a
    run's files, a state, the filters or the order changed (common.derived on common.rows_key)."""
    def build():
        table = runs_table(rows)
        if not table.empty:
            table = table.sort_values(column, ascending=not descending, na_position="last", kind="stable")
        return table, epoch_disagreements(rows, table)

    return common.derived("runs_table", (common.rows_key(rows), column, descending), build)


def epoch_disagreements(rows: list[dict], table: pd.DataFrame) -> list[str]:
    """One sentence per run whose model/ holds another epoch than its best epoch, saying why."""
    imported = {r["name"] for r in rows if r.get("imported")}
    notes = []
    differs = table["model epoch"].notna() & table["best epoch"].notna() & (table["model epoch"] != table["best epoch"])
    for _, row in table[differs].iterrows():
        why = ("imported seed logs: the notebook's saved model is its last epoch" if row["name"] in imported
               else "its model was kept under an older rule of the trainer")
        notes.append(f"**{row['name']}**: model/ holds epoch {row['model epoch']:.0f}, the best epoch by val top-3 "
                     f"is {row['best epoch']:.0f} ({why}).")
    return notes


def filter_rows(rows: list[dict], search: str, models: list[str], statuses: list[str]) -> list[dict]:
    needle = search.strip().lower()
    out = []
    for r in rows:
        if needle and needle not in r["name"].lower() and needle not in (r.get("parent") or "").lower() \
                and needle not in (r.get("model") or "").lower():
            continue
        if models and (r.get("model") or "") not in models:
            continue
        if statuses and r["status"] not in statuses:
            continue
        out.append(r)
    return out


def plus_minus(stats: tuple) -> str:
    """(mean, sd, n) of pipeline.runs.mean_sd as "0.7412 ± 0.0021"; MISSING without values."""
    mean, sd, _ = stats
    if mean is None:
        return MISSING
    return f"{mean:.4f} ± {sd:.4f}" if sd is not None else f"{mean:.4f}"


def seed_group_table(rows: list[dict]) -> pd.DataFrame:
    """One row per seed group (pipeline.runs.seed_groups) of the rows' runs: its members, count and the
    mean ± sd of their test top-1 / top-3 (eval.json) and best val top-3."""
    by_name = {r["name"]: r for r in rows}
    records = []
    for group in common.seed_groups_of([r for r in rows if r["status"] != "damaged"]):
        metrics = runs_mod.seed_group_metrics(group, by_name)
        evaluated = metrics["test_top1"][2]
        records.append({
            "group": group.label, "runs": len(group.members), "members": ", ".join(group.members),
            "seeds": ", ".join(map(str, group.seeds)),
            "test top-1 (mean ± sd)": plus_minus(metrics["test_top1"]),
            "test top-3 (mean ± sd)": plus_minus(metrics["test_top3"]),
            "evaluated": f"{evaluated} of {len(group.members)}",
            "best val top-3 (mean ± sd)": plus_minus(metrics["best_val_top3"]),
        })
    return pd.DataFrame.from_records(records, columns=[
        "group", "runs", "members", "seeds", "test top-1 (mean ± sd)", "test top-3 (mean ± sd)", "evaluated",
        "best val top-3 (mean ± sd)"])


def family_tree(rows: list[dict]) -> tuple[str, int]:
    """The runs' family tree (pipeline.runs.lineage_forest) as indented text, one run a line: a branch
    under its parent with the epoch it started from, a warm start under its source, each with its
    status, epochs and best val top-3; a run whose origin cannot be placed is a root with the reason.
    Runs on their own (no parent, no child, nothing to note) are left out: (text, how many)."""
    by_name = {r["name"]: r for r in rows}
    nodes = runs_mod.lineage_forest(rows)
    last_child = {child: child == node.children[-1] for node in nodes for child in node.children}
    indent: dict[str, str] = {}  # what the lines under a run start with: a bar while siblings follow
    lines, alone = [], 0
    for node in nodes:
        if not node.depth and not node.children and not node.note:
            alone += 1
            continue
        lead = indent.get(node.parent, "") if node.parent else ""
        branch = ("└─ " if last_child[node.name] else "├─ ") if node.parent else ""
        indent[node.name] = lead + ("" if not node.parent else "   " if last_child[node.name] else "│  ")
        row = by_name.get(node.name, {})
        if node.parent and node.kind == "branch":
            link = f"branch from epoch {node.epoch}" if node.epoch is not None else "branch"
        else:
            link = "warm start from its best model" if node.parent else ""
        best = row.get("best_val_top3")
        facts = [row.get("status", ""), f"{row.get('epochs') or 0} epochs"] + \
            ([f"best val top-3 {best:.4f}"] if isinstance(best, float) else [])
        text = f"{lead}{branch}{node.name}" + (f"  {link}" if link else "") + f"  [{', '.join(facts)}]"
        lines.append(text + (f"  ({node.note})" if node.note else ""))
    return "\n".join(lines), alone


def family_tree_of(rows: list[dict]) -> tuple[str, int]:
    """family_tree of the rows, drawn again only when one of their runs changed."""
    return common.derived("family_tree", common.rows_key(rows), lambda: family_tree(rows))


def has_lineage(rows: list[dict]) -> bool:
    """Whether any run branched, started warm or names a parent: otherwise there is no tree to show."""
    return any(r.get("parent") or r.get("init_from") for r in rows)


def _sync_selection() -> None:
    st.session_state[common.SELECTED_KEY] = list(st.session_state.get("runs_compare_widget", []))


def _runs_seen(rows: list[dict]) -> list[tuple]:
    return [(r["name"], r["status"], r["epochs"]) for r in rows]


@st.fragment(run_every=3)
def _watch_runs(listed: list) -> None:
    """Reruns the page when a run's state or record changes (a job started from another page ended, a
    new run appeared), so the table is never stale for more than a few seconds. `listed`: a list holding
    what the page's own listing saw, taken on the page's run; the fragment's own reruns get the same
    (now empty) list back and list the runs themselves - one listing of every run per page run, not two."""
    seen = listed.pop() if listed else _runs_seen(common.run_summaries())
    common.rerun_when_changed("runs_table", seen)


def render() -> None:
    st.header("Runs")
    common.show_flash()
    directory = common.runs_dir()
    rows = common.run_summaries(directory)
    _watch_runs([_runs_seen(rows)])
    count = st.empty()  # filled once the filters below are known
    if not rows:
        count.caption(f"No runs in `{directory}`")
        st.info("No runs yet. Start one on the **Train** page or with "
                "`python -m pipeline train --name cnn-10 --model cnn --classes cat dog --per-class 1000`.")
        return

    models = sorted({r.get("model") or "" for r in rows} - {""})
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    search = c1.text_input("Search", key="runs_search", placeholder="name, parent or model")
    model_filter = c2.multiselect("Model", models, key="runs_model_filter")
    status_filter = c3.multiselect("Status", STATUSES, key="runs_status_filter")
    sort_label = c4.selectbox("Sort by", list(SORTS), key="runs_sort")
    descending = c4.toggle("Descending", value=sort_label != "name", key="runs_descending")

    shown = filter_rows(rows, search, model_filter, status_filter)
    count.caption(f"{len(shown)} of {len(rows)} runs in `{directory}`" if len(shown) != len(rows)
                  else f"{len(rows)} run{'s' if len(rows) != 1 else ''} in `{directory}`")
    table, disagreements = sorted_table(shown, SORTS[sort_label], descending)
    st.dataframe(table, hide_index=True, width="stretch", key="runs_table", column_config=column_config(),
                 placeholder=MISSING)
    st.caption(f"test top-1 / top-3: the run's evaluation on its **test split** (eval.json); {MISSING} = not evaluated. "
               "best epoch: the highest val top-3 (ties: lower val loss), the trainer's rule; model epoch: the "
               "epoch model/ holds (the one evaluated, drawn with and exported).")
    for note in disagreements:
        st.caption(note)
    damaged = [r for r in shown if r["status"] == "damaged"]
    for r in damaged:
        st.warning(f"**{r['name']}** is damaged: {r.get('damaged')}")
    groups = seed_group_table(shown)
    if not groups.empty:
        st.subheader("Seed groups")
        st.dataframe(groups, hide_index=True, width="stretch", key="runs_seed_groups")
        st.caption("Runs whose configs differ only in their seed (names, dates and versions aside); sd is the "
                   "sample standard deviation over the members. Compare draws a group as its mean curve with a band.")

    if has_lineage(rows):  # every run, whatever the filters: a filtered-out parent would break the tree
        st.subheader("Family tree")
        tree, alone = family_tree_of(rows)
        st.code(tree, language=None)
        st.caption("Branches (`python -m pipeline branch`) under their parent with the epoch they start from; "
                   "warm starts (`train --init-from`) under the run whose best model they started from." +
                   (f" Not shown: {alone} run{'s' if alone != 1 else ''} with no branch or warm start." if alone else ""))

    # Selection for Compare: kept outside the widget's key so it survives visits to other pages.
    names = [r["name"] for r in rows if r["status"] != "damaged"]
    selected = [n for n in st.session_state.get(common.SELECTED_KEY, []) if n in names]
    if st.session_state.get("runs_compare_widget") is None or \
            list(st.session_state.get("runs_compare_widget")) != selected:
        st.session_state["runs_compare_widget"] = selected
    st.multiselect("Runs to compare (shown on the Compare page)", names, key="runs_compare_widget",
                   on_change=_sync_selection)
    picked = set(st.session_state.get("runs_compare_widget", []))
    chosen = common.configs_of([r for r in rows if r["name"] in picked])
    if len(chosen) >= 2:
        every = st.toggle("All fields", key="runs_diff_all", help="Every field of config.json, not only those that differ.")
        differences = runs_mod.config_differences(
            {n: chosen[n] for n in st.session_state["runs_compare_widget"] if n in chosen}, all_fields=every)
        st.caption("Every configuration field of the selected runs (config.json)" if every
                   else "What differs between the selected runs (config.json)")
        if differences:
            st.dataframe(pd.DataFrame([{key: MISSING if v is None else str(v) for key, v in row.items()}
                                       for row in differences]), hide_index=True, key="runs_diff")
        else:
            st.caption("Their configurations are the same apart from names, dates and versions.")

    all_names = [r["name"] for r in rows]
    with st.expander("Rename or delete a run"):
        target = st.selectbox("Run", all_names, key="runs_manage_target")
        left, right = st.columns(2)
        with left:
            new_name = st.text_input("New name", key="runs_new_name", placeholder="letters, digits, . _ -")
            if st.button("Rename", key="runs_rename"):
                try:
                    runs_mod.rename_run(directory, target, new_name.strip())
                except (QuickDrawError, OSError) as exc:
                    st.error(str(exc))
                else:
                    st.session_state[common.SELECTED_KEY] = [
                        new_name.strip() if n == target else n for n in st.session_state.get(common.SELECTED_KEY, [])]
                    common.flash(f"Renamed {target} to {new_name.strip()}.")
                    st.rerun()
        with right:
            confirm_text = st.text_input(f"Type **{target}** to confirm deletion", key="runs_delete_confirm")
            really = st.checkbox("Delete its checkpoints, model and logs for good", key="runs_delete_tick")
            if st.button("Delete", key="runs_delete", type="primary", disabled=not (really and confirm_text == target)):
                try:
                    runs_mod.delete_run(directory, target)
                except (QuickDrawError, OSError) as exc:
                    st.error(str(exc))
                else:
                    st.session_state[common.SELECTED_KEY] = [
                        n for n in st.session_state.get(common.SELECTED_KEY, []) if n != target]
                    common.flash(f"Deleted {target}.")
                    st.rerun()
