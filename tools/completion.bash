# Bash completion for the mfkit tools (mf-embed, mf-filter, ...): options are read from
# the tool's own --help, so they never drift from the option tables; values complete as
# files, except the few that name a choice.
_mfkit_complete()
{
    local cur prev words cword
    _init_completion || return
    case "$prev" in
    --format | -f)
        COMPREPLY=($(compgen -W "rec wds list featlist tree" -- "$cur"))
        return ;;
    --method)
        COMPREPLY=($(compgen -W "anchors components peaks infomap leiden" -- "$cur"))
        return ;;
    --weight | -w)
        COMPREPLY=($(compgen -W "magnitude none" -- "$cur"))
        return ;;
    --precision)
        COMPREPLY=($(compgen -W "fp32 bf16 int8" -- "$cur"))
        return ;;
    esac
    # mf-graph: a command first, then that command's options
    local sub=
    if [[ "$1" == mf-graph ]]; then
        if [[ $cword -eq 1 ]]; then
            COMPREPLY=($(compgen -W "plan shard refine merge build" -- "$cur"))
            return
        fi
        sub=${words[1]}
    fi
    if [[ "$cur" == -* ]]; then
        local opts
        opts=$("$1" $sub --help 2>/dev/null | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u)
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    _filedir
}
complete -F _mfkit_complete mf-embed mf-inspect mf-merge mf-filter mf-cluster mf-eval \
    mf-export mf-report mf-convert mf-synth mf-graph
