"""`train.profile_steps`: a jax.profiler trace of chosen training steps under the run's tb/,
where TensorBoard's profile plugin (xprof) reads it; bad values stop with one line."""

import glob
import os

import jax
import pytest

from jaxtrain import config_checks, main
from tests.fire_test_config import tiny_fire_config


def _tiny(cache_dir: str, **train):
    config = tiny_fire_config(cache_dir, epochs=1, **train)
    config.data.train_stride = 32  # 13 steps: this file needs a few steps, not learning
    return config


def _traces(workdir: str) -> list[str]:
    return glob.glob(os.path.join(workdir, "tb", "plugins", "profile", "*", "*.xplane.pb"))


def _traced_steps(path: str) -> set[int]:
    """The step numbers of the `StepTraceAnnotation`s in an XSpace file, parsed by jaxlib's
    own XSpace reader (what xprof reads, without needing TensorBoard installed)."""
    data = jax.profiler.ProfileData.from_file(path)
    steps = set()
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name == "train":
                    steps |= {int(v) for k, v in event.stats if k == "step_num"}
    return steps


def test_profiled_steps_are_written_and_parse(tmp_path, cache_dir):
    config = _tiny(cache_dir, profile_steps="3,5")
    workdir = str(tmp_path / "run")
    main.run(config, workdir)
    traces = _traces(workdir)
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
    assert _traced_steps(traces[0]) == {3, 4, 5}


def test_a_run_that_raises_inside_the_window_still_writes_its_trace(tmp_path, cache_dir):
    config = _tiny(cache_dir, profile_steps="2,1000")

    def fail_at(step):
        if step == 4:
            raise RuntimeError("stop here")

    workdir = str(tmp_path / "run")
    with pytest.raises(RuntimeError, match="stop here"):
        main.run(config, workdir, on_step=fail_at)
    traces = _traces(workdir)
    assert len(traces) == 1 and _traced_steps(traces[0]) == {2, 3, 4}
    jax.profiler.start_trace(str(tmp_path / "again"))  # the trace was stopped: a new one starts
    jax.profiler.stop_trace()


@pytest.mark.parametrize("value", ["20,10", "a,b", "10", "0,5", "1,2,3", "-1,4"])
def test_bad_profile_steps_is_one_line_naming_the_key(value):
    config = tiny_fire_config("/nonexistent")
    config.train.profile_steps = value
    with pytest.raises(config_checks.ConfigValueError, match=r"config\.train\.profile_steps=") as e:
        config_checks.check_shared(config)
    assert "\n" not in str(e.value) and '"FIRST,LAST"' in str(e.value)


def test_profile_steps_accepted_values():
    assert config_checks.parse_step_range("") is None
    assert config_checks.parse_step_range("10,20") == (10, 20)
    assert config_checks.parse_step_range(" 5, 5 ") == (5, 5)
