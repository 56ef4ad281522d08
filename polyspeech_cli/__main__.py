"""`python -m polyspeech_cli ARGS` == `polyspeech ARGS`: the CLI as a module, for launchers that need
one (torchrun runs a module or a script, not a console script):

    torchrun --standalone --nproc_per_node 2 -m polyspeech_cli train lm --config conf/lm_160m.yaml --train-cuts ... --exp-dir exp/lm
"""

from polyspeech_cli.cli import main

if __name__ == "__main__":
    main()
