# SPDX-License-Identifier: LGPL-2.1-or-later
# Bash completion for migctl: verbs, options, and devices/migrations/policies asked from migd itself.

# Asks migd through the same bus options the command line has so far (--bus ADDRESS, --user, -H HOST).
# COMP_LINE, split on blanks only: COMP_WORDS splits "unix:path=…,guid=…" at its ':' and '='.
__migctl_ask() {
        local -a bus=() words=()
        local i
        read -ra words <<<"$COMP_LINE"
        for ((i = 1; i < ${#words[@]}; i++)); do
                case ${words[i]} in
                --bus | -H | --host)
                        bus+=("${words[i]}" "${words[i + 1]}")
                        ;;
                --user)
                        bus+=(--user)
                        ;;
                esac
        done
        "${COMP_WORDS[0]}" "${bus[@]}" --no-color "$@" --json 2>/dev/null
}

# The values of KEY in migd's compact JSON, one a line.
__migctl_json_values() {
        sed -e 's/"'"$1"'":"\([^"]*\)"/\n\1\n/g' | sed -n '2~2p'
}

__migctl_devices() {
        __migctl_ask devices | __migctl_json_values id
}

__migctl_migrations() {
        __migctl_ask status | __migctl_json_values id
}

__migctl_policies() {
        __migctl_ask policies | __migctl_json_values name
}

_migctl() {
        local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
        local verbs="devices show policies policy migrate status watch cancel resolve timeline reload version help"
        local globals="--help --version --json --bus --user --host -H --no-color"
        local verb="" i

        for ((i = 1; i < COMP_CWORD; i++)); do
                case ${COMP_WORDS[i]} in
                --bus | -H | --host)
                        ((i++))
                        ;;
                -*) ;;
                *)
                        verb=${COMP_WORDS[i]}
                        break
                        ;;
                esac
        done

        case $prev in
        --bus | --to)
                return 0
                ;;
        -H | --host)
                COMPREPLY=($(compgen -A hostname -- "$cur"))
                return 0
                ;;
        --policy)
                COMPREPLY=($(compgen -W "$(__migctl_policies)" -- "$cur"))
                return 0
                ;;
        --precopy)
                COMPREPLY=($(compgen -W "off auto required" -- "$cur"))
                return 0
                ;;
        --target)
                return 0
                ;;
        esac

        if [[ -z $verb ]]; then
                if [[ $cur == -* ]]; then
                        COMPREPLY=($(compgen -W "$globals" -- "$cur"))
                else
                        COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
                fi
                return 0
        fi

        local options="--help --json" words=""
        case $verb in
        migrate)
                options+=" --to --target --policy --precopy --no-wait"
                words=$(__migctl_devices)
                ;;
        show)
                words=$(__migctl_devices)
                ;;
        status | watch | timeline)
                words=$(__migctl_migrations)
                ;;
        cancel)
                options+=" --no-wait"
                words=$(__migctl_migrations)
                ;;
        resolve)
                options+=" --commit --abort"
                words=$(__migctl_migrations)
                ;;
        policy)
                options+=" --flags --uapi"
                if [[ $prev == policy ]]; then
                        words="show check explain"
                else
                        words=$(__migctl_policies)
                fi
                ;;
        esac
        if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$options" -- "$cur"))
        else
                COMPREPLY=($(compgen -W "$words" -- "$cur"))
        fi
        return 0
}

complete -F _migctl migctl
