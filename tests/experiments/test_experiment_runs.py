"""An experiment's sub-runs continue where they stopped."""

import os
import signal

import pytest

from resnet_cifar.errors import Interrupted
from tiny import SMALL_RUN, tiny_config


def test_an_interrupted_experiment_continues_its_sub_run(cifar_dir, tmp_path):
    from resnet_cifar.experiments.subruns import continue_from_checkpoint
    from resnet_cifar.train.loop import Callback
    from tiny import make_trainer

    config = tiny_config(**SMALL_RUN, data_dir=str(cifar_dir))

    class StopAfterThree(Callback):
        def on_step(self, trainer):
            if trainer.position.step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        make_trainer(config, tmp_path / "sub", callbacks=[StopAfterThree()]).fit()
    again = make_trainer(config, tmp_path / "sub")
    assert continue_from_checkpoint(again) and again.position.step == 3
    other = make_trainer(tiny_config(**SMALL_RUN, data_dir=str(cifar_dir), lr=0.05), tmp_path / "sub")
    assert not continue_from_checkpoint(other)  # another configuration starts afresh
