"""The README's example pipeline, cold then warm in fresh processes."""

PIPELINE = '''
import pandas as pd
from lwdp import stage

@stage(some_raw_file="raw/input.csv", cache=True)
def stg_read_format_raw(**kwargs) -> pd.DataFrame:
    return pd.read_csv(kwargs.get("some_raw_file"))

@stage(basic_raw=stg_read_format_raw, cache=True, cache_format="parquet")
def stg_format_more(**kwargs) -> pd.DataFrame:
    raw = kwargs.get("basic_raw")
    raw["new_analysis_column"] = 3
    return raw

@stage(formatted_src=stg_format_more)
def stg_final_process(**kwargs) -> pd.DataFrame:
    result = kwargs.get("formatted_src")
    result["wizard"] = 5
    return result

print(stg_final_process().to_csv(index=False))
'''


def test_cold_then_warm_run(project):
    project.write("raw/input.csv", "a,b\n1,x\n2,y\n")
    project.write("pipeline.py", PIPELINE)
    cold = project.run()
    assert cold.outcomes() == {
        "stg_read_format_raw": "computed",
        "stg_format_more": "computed",
        "stg_final_process": "computed-uncached",
    }
    warm = project.run()
    assert warm.outcomes() == {
        "stg_format_more": "hit",
        "stg_final_process": "computed-uncached",
        "stg_read_format_raw": "not-needed",
    }
    assert warm.stdout == cold.stdout
    assert cold.stdout.splitlines()[0] == "a,b,new_analysis_column,wizard"
