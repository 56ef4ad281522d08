"""`python -m polyspeech_cli.lm` == `polyspeech train lm` (for torchrun, which needs a module or script):

    torchrun --nproc_per_node 2 -m polyspeech_cli.lm --config conf/lm_tiny.yaml --train-cuts ... --exp-dir exp/lm
"""

import typer

from polyspeech_cli.commands.lm import train_lm

if __name__ == "__main__":
    typer.run(train_lm)
