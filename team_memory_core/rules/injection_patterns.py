"""The rule table of team_memory_core/rules/injection.py: each rule's code, meaning and
patterns, on the normalised text (NFKC, invisible characters removed, case folded, spaces
collapsed; newlines kept).

It runs on the save path, so every pattern has a guard: groups of words, each group needing
one of its words somewhere in the text, checked by substring search before the pattern runs.
A memory that holds none of a pattern's words costs a few substring scans. Every quantifier is
bounded and none is nested, so a long or odd text stays linear.
"""

from __future__ import annotations

import re

from team_memory_core.rules.injection_rule import Rule
from team_memory_core.rules.injection_rule import pattern as _p

# Who an agent-directed text addresses.
_AI = (r"(?:ai|a\.i\.|llms?|(?:large\s)?language\smodels?|claude|copilot|cursor|chatgpt|gpt"
       r"|gemini|(?:ai\s|coding\s)(?:assistants?|agents?|bots?|models?)|assistants?)")
_AI_WORDS = "ai llm language claude copilot cursor gpt gemini assistant agent bot model"
AGENT_WORD = re.compile(r"\b(?:ai|llms?|assistants?|agents?|claude|copilot|cursor|chatgpt|gpt"
                        r"|gemini|language\smodels?)\b")

# What must not leave the machine.
_SECRET_FILE = (r"(?:\.env\b|~?/?\.ssh\b|\bid_(?:rsa|ed25519|ecdsa|dsa)\b|\.aws/credentials"
                r"|\.netrc\b|\.npmrc\b|\.pypirc\b|\.git-credentials\b|\.kube/config\b"
                r"|\.docker/config\.json|/etc/(?:shadow|passwd)\b)")
_SECRET_FILE_WORDS = (".env .ssh id_rsa id_ed id_ecdsa id_dsa credentials .netrc .npmrc "
                      ".pypirc kube/config .docker /etc/")
_SECRET = (
    rf"(?:{_SECRET_FILE}|\benvironment\svariables?\b|\benv\svars?\b|\benv\b"
    r"|\b(?:aws|gcp|azure|cloud|api|access|secret|private|deploy|ssh|signing|encryption|master)"
    r"\skeys?\b"
    r"|\b(?:access|auth|api|bearer|session|github|gitlab|npm|pypi|deploy|oauth|refresh|slack)"
    r"\stokens?\b"
    r"|\bcredentials\b|\bpasswords?\b|\bpassphrases?\b|\bsecrets?\b|\bcookies\b"
    r"|\$\{?[a-z_]{0,40}(?:key|token|secret|password|passwd|pwd)[a-z_]{0,20}\}?"
    r"|\b[a-z][a-z0-9]{0,30}(?:_[a-z0-9]{1,30}){0,4}_(?:api_key|key|token|secret|password|pat)\b)"
)
_SECRET_WORDS = f"{_SECRET_FILE_WORDS} env key token secret password passphrase cookie pwd _pat"
_OUT = (r"(?:send|post|upload|transmit|forward|e-?mail|exfiltrate|leak|paste|publish|share"
        r"|submit|copy|sync|push|print|echo|dump|output|attach|report|expose)")
_OUT_WORDS = ("send post upload transmit forward mail exfiltrate leak paste publish share submit "
              "copy sync push print echo dump output attach report expose")
_DESTINATION = (
    r"\b(?:to|into|onto|on|at|via|through)\s(?:(?:the|a|an|my|this|our|their|your|new|public"
    r"|private|external|remote|following)\s){0,3}"
    r"(?:https?://|ftp://|[\w.+-]{1,64}@[\w-]{1,63}\.[\w.]{2,}|\d{1,3}(?:\.\d{1,3}){3}\b"
    r"|(?:\w{1,20}\s)?(?:gists?|paste\s?bins?|webhooks?|urls?|endpoints?|servers?|discord"
    r"|telegram|s3\sbuckets?|buckets?|dropbox|ngrok|requestbin|webhook\.site|e-?mails?|inbox)\b)"
)
_DESTINATION_WORDS = ("http ftp @ gist paste webhook url endpoint server discord telegram bucket "
                      "dropbox ngrok requestbin mail inbox . 0 1 2 3 4 5 6 7 8 9")


def _verbs(words: str) -> str:
    return r"\b(?:" + "|".join(w.replace("_", r"\s") for w in words.split()) + r")\b"


OVERRIDE = Rule(
    "override-instructions",
    "tells the agent to ignore or override its rules or earlier instructions",
    (
        _p("ignor disregard forget overrid overrul bypass abandon discard neglect",
           r"\b(?:ignore|disregard|forget|override|overrule|bypass|abandon|discard|neglect)\s"
           r"(?:(?:the|these|those|of)\s)?(?:previous|prior|above|earlier|preceding|former"
           r"|original|initial|system|safety|all|any|every|your)\s(?:(?:previous|prior|above"
           r"|earlier|preceding|former|original|old|existing|initial|current|system|safety"
           r"|standing|default|given|other|of|the|your|its)\s){0,3}(?:instructions?|rules"
           r"|guidelines|directions|directives|prompts?|guardrails|constraints|policies|orders"
           r"|commands|context|programming|restrictions|limitations)\b"),
        _p("forget ignor disregard¦everything anything all",
           r"\b(?:forget|ignore|disregard)\s(?:everything|anything|all(?:\sthat)?)\s(?:you\s"
           r"(?:were|have\sbeen|'ve\sbeen)\s(?:told|given|instructed|taught)|(?:said|written"
           r"|mentioned|stated)\s(?:before|above|earlier|so\sfar)|above|before|prior)"),
        _p("outdated obsolete void cancel replaced revoked superseded invalid deprecated lifted "
           "suspended no+longer¦instructions rules guidelines prompt",
           r"\b(?:your|the|all)\s(?:previous|prior|old|original|earlier|current|system)\s"
           r"(?:instructions|rules|guidelines|prompt)\s(?:are|were|is|has\sbeen|have\sbeen)\s"
           r"(?:now\s)?(?:outdated|obsolete|void|cancel+ed|replaced|revoked|superseded|invalid"
           r"|deprecated|lifted|suspended|no\slonger)"),
        _p("overrides",
           r"\boverrides?\s(?:all\s)?(?:your|any|all|earlier|previous|prior)\s(?:\w{1,20}\s)?"
           r"(?:instructions|rules|system\sprompt|guidelines|safety)"),
        _p("memor¦obey trust follow priorit prefer",
           r"\b(?:obey|trust|follow|prioriti[sz]e|prefer)\s(?:the\s)?(?:instructions\s(?:in"
           r"|from|found\sin)\s)?(?:this\s|these\s)?memor(?:y|ies)\s(?:over|above|instead\sof"
           r"|before)\s(?:the\s)?(?:user|system|human|your\sinstructions|anything)"),
        _p("trust¦instructions",
           r"\btrust\s(?:the\s|any\s|all\s)?instructions\s(?:found\s)?(?:in|from)\s(?:memor"
           r"|notes?\b|this\b|team\smemory)"),
        _p("do+not¦follow obey listen",
           r"\bdo\snot\s(?:follow|obey|listen\sto)\s(?:your|the\suser'?s?|the\ssystem|any)\s"
           r"(?:\w{1,20}\s)?(?:instructions|rules|guidelines|prompt)"),
        _p("instructions¦new updated real actual true revised",
           r"\b(?:new|updated|real|actual|true|revised)\s(?:system\s)?instructions\s?(?::"
           r"|follow\b|below\b|apply\b)"),
        _p("no longer", r"\byou\s(?:are|'re)\sno\slonger\s(?:bound|restricted|required\sto"
           r"\sfollow)"),
    ),
)

SYSTEM_PROMPT = Rule(
    "system-prompt", "tries to read or change the agent's system prompt or role",
    (
        _p("your¦prompt message instructions",
           r"\b(?:reveal|print|show|output|repeat|leak|dump|disclose|display|share|recite"
           r"|ignore|change|modify|update|replace|rewrite|overwrite|edit|append\sto|add\sto"
           r"|remove|delete)\s(?:me\s)?your\s(?:(?:full|entire|hidden|original|current"
           r"|initial|whole|secret)\s)?(?:system\s(?:prompt|message|instructions)|initial\s"
           r"(?:prompt|instructions)|hidden\s(?:prompt|instructions)|pre-?prompt)"),
        _p("reveal print output repeat leak dump disclose recite¦prompt message instructions",
           r"\b(?:reveal|print|output|repeat|leak|dump|disclose|recite)\s(?:me\s)?the\s"
           r"(?:(?:full|entire|hidden|original|initial|whole|secret)\s)?(?:system\s(?:prompt"
           r"|message|instructions)|hidden\s(?:prompt|instructions))"),
        _p("system prompt", r"\bsystem\sprompt\s(?:update|override|change|injection|patch)\s?:"),
        _p("you are now¦mode",
           r"\byou\sare\snow\s(?:in\s)?(?:maintenance|developer|debug|god|admin|root"
           r"|unrestricted|jailbreak|dan|sudo)\smode\b"),
        _p("your new", r"\byour\snew\s(?:role|persona|identity|instructions|task|goal|objective"
           r"|purpose|directive)\s(?:is|are|:)"),
    ),
)

ROLE_PLAY = Rule(
    "role-play", "a role-play or jailbreak meant to lift the agent's restrictions",
    (
        _p("you are act pretend role play behave simulate",
           r"\b(?:you\sare\s(?:now\s)?|act\sas\s|acting\sas\s|pretend\s(?:to\sbe|you\sare"
           r"|that\syou\sare|you're)\s|role-?play\sas\s|play\sthe\srole\sof\s|behave\s(?:as"
           r"|like)\s|simulate\s)(?:an?\s|the\s)?(?:dan\b|stan\b|dude\b|aim\b|unrestricted"
           r"|unfiltered|uncensored|jailbroken|evil|rogue|unaligned|amoral|unethical"
           r"|rebellious|liberated|unbound)"),
        _p("you are act as pretend¦restrictions limits rules filters guidelines safety ethics "
           "morals boundaries",
           r"\b(?:you\sare\s(?:now\s)?|act\sas|pretend\s(?:to\sbe|you\sare))\s(?:an?\s)?"
           r"(?:ai|assistant|model|chatbot|shell|terminal|linux\sterminal|system)\s(?:with\sno"
           r"|without(?:\sany)?)\s(?:restrictions|limits|limitations|rules|filters|guidelines"
           r"|safety|ethics|morals|boundaries)"),
        _p("anything now", r"\bdo\sanything\snow\b"),
        _p("jailbr", r"\bjailbr(?:eak|oken)\s(?:mode|enabled|activated)"),
        _p("mode¦developer god dan debug",
           r"\b(?:developer|god|dan|debug)\smode\s(?:enabled|on|activated|unlocked)\b"
           r"|\b(?:enable|activate|enter|switch\sto|unlock)\s(?:developer|god|dan)\smode\b"),
        _p("character", r"\bstay\sin\scharacter\b"),
        _p("without¦ethical moral safety content",
           r"\bwithout\s(?:any\s)?(?:ethical|moral|safety|content)\s(?:restrictions"
           r"|guidelines|filters|limits|limitations|considerations|policies)\b"),
        _p("disabled turned lifted removed suspended bypassed off¦safety security content",
           r"\b(?:safety|security|content)\s(?:checks|filters|guardrails|guidelines"
           r"|restrictions|policies)\s(?:are|have\sbeen|were)\s(?:now\s)?(?:disabled|turned"
           r"\soff|lifted|removed|suspended|bypassed|off)\b"),
        _p("bound by refuse", r"\bno\slonger\sbound\sby\b|\bnever\srefuse\b"),
    ),
)

FAKE_AUTHORITY = Rule(
    "fake-authority",
    "poses as a system, administrator or vendor message, or forges a delimiter",
    (
        _p("system assistant admin",
           r"(?:^|\n)[\s#>*\-]{0,6}\[?\s?(?:system|system\smessage|system\snote|system"
           r"\soverride|assistant|admin\soverride)\s?\]?\s?:"),
        _p("<¦ <<sys <</sys [inst [/inst",
           r"<\|\s?(?:im_start|im_end|system|endoftext|eot_id|start_header_id)\s?\|>"
           r"|<</?sys>>|\[/?inst\]"),
        _p("<",
           r"</?\s?(?:system|instructions|system-?prompt|tool_results?|function_results"
           r"|function_calls|human|assistant)\s?>"
           r"|</\s?(?:team-?memory|memory|memories|context|data|document|quote|untrusted)\s?>"),
        _p("begin start¦instructions prompt directives rules",
           r"\b(?:begin|start)\s(?:of\s)?(?:new|updated|hidden|secret|system|admin|real|true)"
           r"\s(?:instructions|prompt|directives|rules)\b"),
        _p("end of", r"\bend\sof\s(?:memory|memories|context|document|data|user\sinput"
           r"|quoted\s(?:data|text))\b"),
        _p(" from ",
           r"\b(?:message|instructions?|directive|notice|order|update|note)\sfrom\s(?:anthropic"
           r"|openai|the\s(?:system|developers?|administrators?|admins?|repository\sowners?"
           r"|repo\sowners?|operators?|platform))\b"),
        _p("priority",
           r"\b(?:highest|top|maximum|absolute|critical|overriding)\spriority\b[^\n]{0,40}"
           r"\b(?:instruction|override|directive|rule|command)s?\b"
           r"|\bpriority\s?:\s?(?:highest|critical|override|maximum|absolute)\b"),
        _p("override sudo mode", r"\badmin(?:istrator)?\soverride\b|\bsudo\smode\b"),
        _p("granted given",
           r"\byou\s(?:have\sbeen|are\s(?:now\s)?|were)\s(?:granted|given)\s(?:elevated|admin"
           r"|administrator|root|full|unrestricted|special|superuser)\b"),
        _p("this¦from written",
           r"\bthis\s(?:message|instruction|note|memory|text)\s(?:is\sfrom|comes\sfrom|was"
           r"\swritten\sby)\s(?:anthropic|openai|your\s(?:developer|operator|creator"
           r"|administrator)|the\ssystem)"),
    ),
)

ADDRESSES_AI = Rule(
    "addresses-ai", "addresses AI agents that will read it, as a message to them",
    (
        _p("if you are",
           r"\bif\syou\sare\s(?:an?\s)?(?:ai|a\.i\.|llm|(?:large\s)?language\smodel|(?:ai\s"
           r"|coding\s)?(?:assistant|agent)|chatbot|bot|claude|gpt|copilot)\b"),
        _p(f"note message instruction attention notice reminder memo warning important p.s ps"
           f"¦{_AI_WORDS}",
           r"\b(?:note|message|instructions?|attention|notice|reminder|memo|warning|important"
           r"|p\.?s\.?)\s?[,:]?\s?(?:to|for)\s(?:the\s|any\s|all\s|every\s)?" + _AI + r"\b"),
        _p(f"attention¦{_AI_WORDS}", r"\battention\s?[,:!]?\s?(?:all\s)?" + _AI + r"\b"),
        _p("ai llm coding¦this these",
           r"\b(?:ai|llm|coding)\s(?:agents?|assistants?|models?)\s(?:reading|that\sreads?"
           r"|who\sreads?|processing|parsing|seeing)\s(?:this|these)\b"),
        _p("whoever anyone any the¦this these",
           r"\bto\s(?:whoever|anyone|any\s(?:ai|agent|assistant|model|llm)|the\s(?:ai|agent"
           r"|assistant|model|llm))\s(?:who\s|that\s)?(?:reads?|reading|processes?"
           r"|processing|sees?)\s(?:this|these)\b"),
        _p("claude assistant ai copilot gpt llm¦, :",
           r"(?:^|\n|[.!?]\s)\s?(?:dear\s)?(?:claude|assistant|ai|copilot|chatgpt|gpt|llm)\s?"
           r"[,:]\s?(?:you|ignore|run|execute|always|never|please|from\snow|this\sis|i\sam"
           r"|we\sneed)\b"),
        _p("dear", r"\bdear\s(?:ai|assistant|claude|model|llm|copilot|agent)\b"),
    ),
)

RUN_COMMAND = Rule(
    "run-command", "orders a dangerous command: a fetched script, a reverse shell, "
    "destruction, or disabling safeguards",
    (
        # fetched and piped into a shell or an interpreter
        _p("curl wget iwr irm invoke-¦|",
           r"\b(?:curl|wget|iwr|irm|invoke-webrequest|invoke-restmethod)\b[^\n|;]{0,200}\|\s?"
           r"(?:sudo\s)?(?:(?:ba|z|k|da|fi|c)?sh|python3?|perl|ruby|node|iex"
           r"|invoke-expression)\b"),
        _p("curl wget¦<( $(", r"\b(?:ba|z)?sh\s(?:-c\s)?[\"']?(?:<\(|\$\()\s?(?:curl|wget)\b"),
        _p("iex", r"\biex\s?\(\s?(?:new-object\snet\.webclient|iwr|irm|invoke-webrequest)"),
        # reverse shells
        _p("/dev/tcp/", r"/dev/tcp/\S"),
        _p("nc ncat socat mkfifo bash -i",
           r"\bnc(?:at)?\s(?:-\w{1,4}\s){0,4}-[ec]\s|\bsocat\b[^\n]{0,100}\bexec:"
           r"|\bmkfifo\b[^\n]{0,100}\bnc(?:at)?\b|\bbash\s-i\b[^\n]{0,20}>&"),
        # destruction
        _p("rm -",
           r"\brm\s-(?:rf|fr|r\s-f|f\s-r|-recursive\s--force)\s(?:--no-preserve-root\s)?"
           r"(?:/(?=\s|$|\*|`)|~/?(?=\s|$|\*|`)|\$home\b/?(?=\s|$|`)|/(?:etc|usr|var|home|srv"
           r"|opt|root|boot|bin|lib)\b|\*(?=\s|$|`)|\.\./)"),
        _p("mkfs dd :()",
           r"\bmkfs(?:\.\w{1,8})?\s/dev/|\bdd\sif=\S{1,200}\sof=/dev/(?:sd|nvme|hd|disk|xvd)"
           r"|:\(\)\s?\{\s?:\s?\|\s?:\s?&\s?\}\s?;\s?:"),
        _p("chmod",
           r"\bchmod\s(?:-r\s)?(?:0?777|a\+rwx|ugo\+rwx|o\+w)\s(?:/|~|\$home)"
           r"|\bchmod\s[ugoa]{0,4}\+s\b"),
        # decoded and run
        _p("base64¦sh", r"\bbase64\s(?:-d|--decode|-d\w{1,4})\b[^\n]{0,80}\|\s?(?:sudo\s)?"
           r"(?:ba|z)?sh\b"),
        _p("eval", r"\beval\s[\"']?\$\(\s?(?:curl|wget|echo\s[a-z0-9+/=]{16,}\s?\|\s?base64)"),
        _p("powershell", r"\bpowershell(?:\.exe)?\b[^\n]{0,60}\s-(?:e|ec|enc|encodedcommand)\s"
           r"[a-z0-9+/=]{16,}"),
        # the repository's safeguards
        _p("git push¦-f --force", r"\bgit\spush\s(?:[^\n;|&]{0,60}\s)?(?:-f|--force)(?![-\w])"),
        _p("hookspath", r"\bgit\sconfig\s(?:--global\s)?core\.hookspath\s/dev/null"),
    ),
    negatable=True,
)

FETCH = Rule(
    "fetch-instructions", "tells the agent to fetch a URL and follow or run what it says",
    (
        _p("http¦fetch retrieve load read get download open visit curl¦follow obey execute "
           "run apply do what",
           r"\b(?:fetch|retrieve|load|read|get|download|open|visit|curl)\b[^\n]{0,60}"
           r"https?://\S{1,300}[^\n]{0,40}\b(?:and|then)\s(?:follow|obey|execute|run|apply"
           r"|do\swhat)\b[^\n]{0,30}\b(?:it|them|instructions?|commands?|says|there"
           r"|contents?)\b"),
    ),
)

EXFILTRATE = Rule(
    "exfiltrate", "asks to send secrets, keys, environment variables or private files "
    "somewhere, or to disclose them",
    (
        _p(f"{_OUT_WORDS}¦{_SECRET_WORDS}¦{_DESTINATION_WORDS}",
           rf"\b{_OUT}\b[^\n;]{{0,80}}?{_SECRET}[^\n;]{{0,100}}?{_DESTINATION}"),
        _p("posted sent uploaded forwarded mailed pasted published exfiltrated leaked"
           f"¦{_SECRET_WORDS}¦{_DESTINATION_WORDS}",
           rf"{_SECRET}[^\n;]{{0,60}}\b(?:posted|sent|uploaded|forwarded|e-?mailed|pasted"
           rf"|published|exfiltrated|leaked)\b[^\n;]{{0,40}}{_DESTINATION}"),
        _p(f" of ¦value content text¦{_SECRET_WORDS}",
           _verbs("include put add append embed insert write print echo output reveal show "
                  "display tell leave paste attach share")
           + r"[^\n;]{0,30}\b(?:the\s)?(?:full\s|raw\s|actual\s)?(?:value|values|contents?"
           rf"|text)\sof\s(?:the\s|your\s|all\s)?{_SECRET}"),
        _p(f"cat ¦{_SECRET_FILE_WORDS}", rf"\bcat\s[^\n|;&]{{0,60}}{_SECRET_FILE}"),
        _p("env set export¦|",
           r"\b(?:printenv|env|set|export\s-p)\s?\|\s?(?:curl|wget|nc|ncat|base64|xxd)\b"),
        _p(f"curl¦{_SECRET_FILE_WORDS}",
           r"\bcurl\b[^\n]{0,200}?\s(?:-d|--data(?:-binary|-raw|-urlencode)?|-f|--form|-t"
           rf"|--upload-file)\s?[\"']?@?[^\s\"']{{0,100}}{_SECRET_FILE}"),
        _p(f"--upload --send --post --exfil¦{_SECRET_FILE_WORDS}",
           rf"(?:--upload|--send|--post|--exfil\w{{0,10}})[=\s][^\s]{{0,100}}{_SECRET_FILE}"),
        _p("python node ruby perl¦environ getenv process.env¦urlopen requests. http socket "
           "fetch(",
           r"\b(?:python3?|node|ruby|perl)\s-[ce]\s[^\n]{0,300}?(?:(?:environ|getenv"
           r"|process\.env)[^\n]{0,300}?(?:urlopen|requests\.|https?://|socket|fetch\()"
           r"|(?:urlopen|requests\.|socket|fetch\()[^\n]{0,300}?(?:environ|getenv"
           r"|process\.env))"),
        _p("http¦=$", r"https?://\S{0,200}[?&][\w-]{1,30}=\$\{?[a-z_]{0,40}(?:key|token|secret"
           r"|password)"),
        _p("![¦http",
           r"!\[[^\]\n]{0,100}\]\(\s?https?://[^)\n]{0,300}?[?&][\w-]{1,30}=\s?(?:\[|\{|<|\$"
           r"|%7b|%5b|%3c)"),
    ),
    negatable=True,
)

CALL_TOOL = Rule(
    "call-tool", "tells the agent to call a destructive or privileged tool",
    (
        _p("mcp__ _memor",
           r"\b(?:call|invoke|use|run|trigger|execute|fire)\s(?:the\s)?[`'\"]?(?:mcp__[\w-]+"
           r"|(?:forget|purge|delete|remove)_memor(?:y|ies)\b|\w{1,40}__(?:forget|purge)"
           r"_memory\b)"),
        _p("tool",
           r"\b(?:call|invoke|use|run|trigger)\s(?:the\s)?(?:bash|shell|terminal|webfetch"
           r"|web\s?fetch|web\ssearch|computer|write|edit|notebookedit|task)\stool\s(?:with|to"
           r"|and|on)\b"),
        _p("approve allow accept authori¦all every any",
           r"\b(?:approve|allow|accept|auto-?approve|authori[sz]e)\s(?:all|every|any)\s"
           r"(?:future\s)?(?:tool\s(?:calls?|uses?|requests?)|permissions?\srequests?"
           r"|commands?|permission\sprompts?)\b"),
    ),
)

AGENT_CONFIG = Rule(
    "agent-config", "tells the agent to loosen its permissions or plant instructions in "
    "agent configuration files",
    (
        _p("dangerously-skip-permissions bypasspermissions",
           r"\b(?:use|run|start|launch|enable|add|pass|set|switch\sto|always)\b[^\n.]{0,40}"
           r"(?:--dangerously-skip-permissions|bypasspermissions)"),
        _p("permissions.allow allowedtools allowed_tools bypasspermissions defaultmode "
           "enableallprojectmcpservers",
           r"\b(?:add|append|insert|put|set|write|include)\b[^\n]{0,80}\b(?:permissions\.allow"
           r"|allowedtools|allowed_tools|bypasspermissions|defaultmode"
           r"|enableallprojectmcpservers)\b"),
        _p("bash(", r"\b(?:add|append)\s[\"'`]?bash\(\w{0,20}[:\s]?\*\)"),
        _p("permission approval",
           r"\b(?:disable|turn\soff|bypass|suppress)\s(?:the\s|all\s|any\s)?(?:permission"
           r"|approval)\s(?:prompts?|checks?|dialogs?|requests?)"),
        _p("claude.md agents.md rules instructions.md rc .profile .git/hooks .claude",
           r"\b(?:write|add|append|insert|copy|put|save)\s(?:this|these|the\sfollowing|it)\b"
           r"[^\n]{0,60}\b(?:to|into|in)\s(?:the\s|your\s|every\s)?(?:claude\.md|agents\.md"
           r"|\.cursorrules|\.windsurfrules|copilot-instructions\.md|\.bashrc|\.zshrc"
           r"|\.profile|\.git/hooks|\.claude/|~/\.claude)"),
    ),
)

SELF_PROPAGATION = Rule(
    "self-propagation", "tells the agent to copy it into other memories, projects or future "
    "sessions",
    (
        _p("every all each any other future¦append add prepend insert include copy attach",
           r"\b(?:append|add|prepend|insert|include|copy|attach)\s(?:the\sfollowing|this|these"
           r"|that)\s(?:\w{1,20}\s)?(?:line|lines|sentence|text|paragraph|instructions?|note"
           r"|message|rule|memory|block)\s(?:to|into|in|at\sthe\send\sof)\s(?:every|all|each"
           r"|any|other|future)\b"),
        _p("every all each other¦save store remember copy replicate propagate spread share",
           r"\b(?:save|store|remember|copy|replicate|propagate|spread|share)\s(?:this|these"
           r"|the\sfollowing)\s(?:\w{1,20}\s)?(?:memory|memories|rule|rules|instructions?|note"
           r"|message)\s(?:to|in|into|for|across|with)\s(?:every|all|each|other)\s(?:the\s)?"
           r"(?:\w{1,20}\s)?(?:projects?|repos?|repositor(?:y|ies)|teams?|members?"
           r"|memor(?:y|ies)|sessions?|agents?)"),
        _p("remember¦all every each",
           r"\bremember\s(?:this\s|that\s)?(?:for|in|across|during)\s(?:all|every|each)\s"
           r"(?:future\s)?(?:sessions?|conversations?|chats?|answers?|responses?|replies)"),
    ),
)

CONCEAL = Rule(
    "conceal", "tells the agent to hide something from the user or act silently",
    (
        _p("not n't never¦mention reveal disclose report show explain",
           r"\b(?:do\snot|don'?t|never)\s(?:mention|reveal|disclose|report|show|explain)\s"
           r"(?:this|these|that|it)\b[^\n.]{0,40}\b(?:to|with)\s(?:the\s|your\s)?(?:user|human"
           r"|developer|operator|anyone|them)\b"),
        _p("not n't never¦tell inform alert warn notify",
           r"\b(?:do\snot|don'?t|never)\s(?:tell|inform|alert|warn|notify)\s(?:the\s|your\s)?"
           r"(?:user|human|operator)\s(?:about\s)?(?:this|that\syou|what\syou|these|it\b"
           r"|any\sof\sthis)"),
        _p("not n't never¦let",
           r"\b(?:do\snot|don'?t|never)\slet\s(?:the\suser|them|anyone|the\shuman|the"
           r"\sdeveloper)\s(?:know|see|notice|find\sout)\s(?:about\s)?(?:this|that\syou|these"
           r"|what\syou|it\b)"),
        _p("without",
           r"\bwithout\s(?:telling|informing|notifying|alerting|asking|warning)\s(?:the\s"
           r"|your\s)?(?:user|human|developer|operator)\b"),
        _p("silently secretly quietly covertly discreetly stealthily invisibly",
           r"\b(?:silently|secretly|quietly|covertly|discreetly|stealthily|invisibly)\s(?:run"
           r"|execute|send|upload|delete|remove|install|download|fetch|add|modify|change|call"
           r"|invoke|post|copy|disable|exfiltrate|forward|push|rewrite|insert|append)\b"),
        _p("keep hide¦from",
           r"\b(?:keep|hide)\s(?:this|it|these\s(?:instructions|steps)|your\sactions|the"
           r"\s(?:following|change))\s(?:secret\s|hidden\s)?from\s(?:the\s|your\s)?(?:user"
           r"|human|developer|operator|reviewers?)\b"),
        _p("must should need¦know find see notice learn",
           r"\bthe\s(?:user|human)\s(?:must|should|need)\s(?:not|never)\s(?:know|find\sout"
           r"|see|notice|learn)\b"),
    ),
)

ENCODED = Rule(
    "encoded-instructions", "holds encoded text (base64) that decodes to instructions, or asks "
    "to decode and run some",
    (
        _p("decode", r"\bdecode\s(?:this|the\sfollowing|it|the\sblob)\b[^\n]{0,60}\b(?:and"
           r"|then)\s(?:run|execute|follow|obey|do)\b"),
    ),
)

RULES: tuple[Rule, ...] = (
    OVERRIDE, SYSTEM_PROMPT, ROLE_PLAY, FAKE_AUTHORITY, ADDRESSES_AI, RUN_COMMAND, FETCH,
    EXFILTRATE, CALL_TOOL, AGENT_CONFIG, SELF_PROPAGATION, CONCEAL,
    Rule("hidden-comment", "holds instructions in a comment a reader of the rendered text "
         "does not see"),
    Rule("hidden-characters", "holds invisible characters (Unicode tags, bidirectional "
         "overrides, zero-width characters) that can hide text"),
    ENCODED,
)

# A sentence that says not to do what it names.
NEGATION = re.compile(r"\b(?:never|not|no|don'?t|doesn'?t|didn'?t|avoid|avoids|stop|stopped"
                      r"|instead\sof|rather\sthan|forbid(?:den|s)?|ban(?:ned|s)?|prohibit(?:ed|s)?"
                      r"|disallow(?:ed|s)?|blocks?|blocked|refuses?|refused|without|no\slonger"
                      r"|warns?\sagainst)\b")

# HTML comments and Markdown's link-reference comments ([//]: # (text)), on the raw text.
COMMENTS = re.compile(r"<!--([\s\S]{0,2000}?)-->"
                      r"|(?m:^[ \t]{0,3}\[(?://|comment|_)\]:[ \t]{0,5}(?:#|<>)[ \t]{0,5}"
                      r"\(([^\n]{0,500})\))")
